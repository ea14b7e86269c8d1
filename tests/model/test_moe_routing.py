"""ffn: moe's DeepSeek routers against Hugging Face: V3's sigmoid scores with a correction bias
and group-limited top-k (noaux_tc), V2's group-limited greedy routing; the router rules by hand
and their validation."""

import pytest
import torch

import explorer
from tests.helpers.hf_reference import build_spec, load_exactly, randomize, tokens, transformers
from tests.helpers.hf_reference import DEEPSEEK_MLA as MLA, from_deepseek

pytestmark = pytest.mark.usefixtures("one_thread")

# 8 experts in 4 groups of 2, the best 2 groups kept, top 3 of those: every rule bites.
E, GROUPS, TOPK_GROUPS, K = 8, 4, 2, 3


def deepseek_v3_reference():
    config = transformers.DeepseekV3Config(
        vocab_size=256, hidden_size=32, intermediate_size=48, moe_intermediate_size=8,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=10,
        max_position_embeddings=64, rms_norm_eps=1e-6, first_k_dense_replace=0,
        n_routed_experts=E, num_experts_per_tok=K, n_group=GROUPS, topk_group=TOPK_GROUPS,
        n_shared_experts=1, norm_topk_prob=True, routed_scaling_factor=2.5,
        tie_word_embeddings=False, attn_implementation="eager", **MLA)
    torch.manual_seed(0)
    hf = randomize(transformers.DeepseekV3ForCausalLM(config))
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a bias large enough to change which experts are chosen
        for layer in hf.model.layers:
            layer.mlp.gate.e_score_correction_bias.copy_(torch.randn(E, generator=gen))
    return hf


def v3_components(**moe):
    ffn = {"name": "moe", "n_experts": E, "top_k": K, "n_shared": 1, "hidden": 8,
           "router": "sigmoid_topk_renorm", "n_groups": GROUPS, "topk_groups": TOPK_GROUPS,
           "group_score": "top2_sum", "score_bias": True, "routed_scaling": 2.5, **moe}
    return {"norm": {"name": "rmsnorm", "eps": 1e-6}, "activation": "silu", "ffn": ffn,
            "attention": {"name": "mla", "q_lora_rank": 10, **MLA},
            "positional": {"name": "rope", "theta": 10000.0}, "weight_tying": "none"}


def v3_pair(write_spec, **moe):
    hf = deepseek_v3_reference()
    ours = explorer.build_model(build_spec(write_spec, v3_components(**moe)))
    load_exactly(ours, from_deepseek(hf))
    with torch.no_grad():
        for i, block in enumerate(ours.trf_blocks):
            if block.ff.score_bias is not None:
                block.ff.score_bias.copy_(hf.model.layers[i].mlp.gate.e_score_correction_bias)
    return ours, hf


def test_logits_equal_deepseek_v3(write_spec):
    from tests.helpers.hf_reference import assert_same_logits

    ours, hf = v3_pair(write_spec)
    assert_same_logits(ours, hf, tokens(2, 20))


@pytest.mark.parametrize("moe", [{"score_bias": False}, {"group_score": "max"},
                                 {"n_groups": 1, "topk_groups": 1},
                                 {"router": "sigmoid_topk"}, {"router": "softmax_topk_renorm"}])
def test_each_v3_routing_rule_matters(write_spec, moe):
    """Without any one of the rules, the logits are not DeepSeek-V3's."""
    ours, hf = v3_pair(write_spec, **moe)
    ids = tokens(2, 20)
    with torch.no_grad():
        assert not torch.allclose(ours(ids), hf(ids).logits, atol=1e-3), moe


def test_v3_router_chooses_as_transformers(write_spec):
    """The experts and weights of every token equal HF's DeepseekV3TopkRouter's."""
    ours, hf = v3_pair(write_spec)
    x = torch.randn(40, 32, generator=torch.Generator().manual_seed(3))
    moe, gate = ours.trf_blocks[0].ff, hf.model.layers[0].mlp.gate
    with torch.no_grad():
        _, want_weights, want_idx = gate(x)
        _, weights, chosen = moe.route(moe.router(x))
    _assert_same_choice(chosen, weights, want_idx, want_weights)


def test_v2_group_limited_greedy_chooses_as_transformers(make_spec):
    """DeepSeek-V2's group_limited_greedy: groups ranked by their best softmax score."""
    config = transformers.DeepseekV2Config(
        hidden_size=16, num_attention_heads=4, n_routed_experts=E, num_experts_per_tok=K,
        n_group=GROUPS, topk_group=TOPK_GROUPS, topk_method="group_limited_greedy",
        routed_scaling_factor=16.0)
    gate = transformers.models.deepseek_v2.modeling_deepseek_v2.DeepseekV2TopkRouter(config)
    torch.nn.init.normal_(gate.weight, std=1.0, generator=torch.Generator().manual_seed(0))
    moe = explorer.build_model(make_spec(model={"vocab_size": 256}, ffn={
        "name": "moe", "n_experts": E, "top_k": K, "hidden": 4, "router": "softmax_topk",
        "n_groups": GROUPS, "topk_groups": TOPK_GROUPS, "group_score": "max",
        "routed_scaling": 16.0})).trf_blocks[0].ff
    with torch.no_grad():
        moe.router.weight.copy_(gate.weight)
        x = torch.randn(50, 16, generator=torch.Generator().manual_seed(1))
        _, want_weights, want_idx = gate(x)
        _, weights, chosen = moe.route(moe.router(x))
    _assert_same_choice(chosen, weights, want_idx, want_weights)


def _assert_same_choice(chosen, weights, want_idx, want_weights):
    """The same experts with the same weights per token, in whatever order topk lists them."""
    order, want_order = chosen.argsort(dim=-1), want_idx.argsort(dim=-1)
    assert torch.equal(chosen.gather(-1, order), want_idx.gather(-1, want_order))
    torch.testing.assert_close(weights.gather(-1, order), want_weights.gather(-1, want_order))


def test_groups_by_hand(make_spec):
    """Scores 0.1..0.8 for experts 0..7 in groups {0,1} {2,3} {4,5} {6,7}; a bias of +1 on
    expert 0. top2_sum ranks group 0 (0.1+1 + 0.2 = 1.3) and group 3 (1.5) best: the top 3 of
    experts 0, 1, 6, 7 by biased score are 0 (1.1), 7, 6; their weights are the unbiased
    sigmoid scores renormalised."""
    spec = make_spec(model={"vocab_size": 256}, activation="silu", ffn={
        "name": "moe", "n_experts": 8, "top_k": 3, "hidden": 4, "n_groups": 4,
        "topk_groups": 2, "group_score": "top2_sum", "score_bias": True,
        "router": "sigmoid_topk_renorm"})
    moe = explorer.build_model(spec).trf_blocks[0].ff
    scores = torch.arange(1, 9, dtype=torch.float32)[None] / 10  # (1, 8)
    with torch.no_grad():
        moe.score_bias[0] = 1.0
        _, weights, chosen = moe.route(torch.logit(scores))
    assert sorted(chosen[0].tolist()) == [0, 6, 7]
    want = {0: 0.1, 6: 0.7, 7: 0.8}
    got = dict(zip(chosen[0].tolist(), weights[0].tolist()))
    assert got == pytest.approx({e: s / 1.6 for e, s in want.items()})


def test_score_bias_is_a_saved_buffer_not_a_parameter(make_spec):
    spec = make_spec(model={"vocab_size": 256}, ffn={"name": "moe", "n_experts": 4,
                                                     "hidden": 4, "score_bias": True})
    moe = explorer.build_model(spec).trf_blocks[0].ff
    assert "score_bias" in moe.state_dict() and "score_bias" not in dict(moe.named_parameters())


@pytest.mark.parametrize("moe, key, fragment", [
    ({"n_groups": 3}, "n_groups", "3 groups cannot share n_experts 8 equally"),
    ({"n_groups": 4, "topk_groups": 5}, "topk_groups", r"must be in 1\.\.n_groups \(4\), got 5"),
    ({"n_groups": 4, "topk_groups": 1, "top_k": 3}, "top_k",
     "3 experts cannot come from topk_groups 1 groups of 2"),
    ({"n_groups": 8, "topk_groups": 2, "group_score": "top2_sum"}, "group_score",
     "top2_sum needs groups of 2"),
    ({"router": "topk_softmax", "score_bias": True}, "router", "topk_softmax ranks the raw"),
    ({"group_score": "sum"}, "group_score", "'sum' is not one of"),
])
def test_bad_routing_is_a_one_line_spec_error(make_spec, moe, key, fragment):
    with pytest.raises(explorer.SpecError, match=rf"components\.ffn\.{key}: {fragment}"):
        make_spec(ffn={"name": "moe", "n_experts": 8, "hidden": 4, **moe})
