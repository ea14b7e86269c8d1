"""ffn: moe against Hugging Face's Mixtral, its auxiliary loss, per-expert routing, the contracts
(aux loss, stats, active parameters), the KV cache and spec errors.

The shared-expert form (DeepSeek-V2) is checked with latent attention in test_mla.py.
"""

import math

import pytest
import torch

import explorer
from explorer.model import contracts
from tests.helpers.hf_reference import (assert_same_logits, build_spec, experts_from_hf, load_exactly,
                          randomize, tokens, transformers)

E, K, F_HIDDEN = 4, 2, 24  # experts, top-k, expert hidden size of the reference models

pytestmark = pytest.mark.usefixtures("one_thread")


def mixtral_components(**moe):
    return {"norm": {"name": "rmsnorm", "eps": 1e-5}, "activation": "silu",
            "ffn": {"name": "moe", "n_experts": E, "top_k": K, "hidden": F_HIDDEN, **moe},
            "attention": {"name": "gqa", "n_kv_heads": 2, "out_bias": False},
            "positional": {"name": "rope", "theta": 10000.0}, "weight_tying": "none"}


def mixtral_reference():
    config = transformers.MixtralConfig(
        vocab_size=256, hidden_size=32, intermediate_size=F_HIDDEN, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=E,
        num_experts_per_tok=K, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
        sliding_window=None, tie_word_embeddings=False, attn_implementation="eager")
    torch.manual_seed(0)
    return randomize(transformers.MixtralForCausalLM(config))


def from_mixtral(hf):
    """Mixtral's weights under explorer's names; gate_up_proj holds each expert's gate (our
    fc_1, fed to the activation) over its up projection (our fc_2)."""
    sd = hf.state_dict()
    out = {"tok_emb.weight": sd["model.embed_tokens.weight"],
           "final_norm.weight": sd["model.norm.weight"], "out_head.weight": sd["lm_head.weight"]}
    for i in range(hf.config.num_hidden_layers):
        src, dst = f"model.layers.{i}.", f"trf_blocks.{i}."
        for theirs, ours in [("self_attn.q_proj", "att.W_query"), ("self_attn.k_proj", "att.W_key"),
                             ("self_attn.v_proj", "att.W_value"), ("self_attn.o_proj", "att.out_proj"),
                             ("input_layernorm", "norm1"), ("post_attention_layernorm", "norm2"),
                             ("mlp.gate", "ff.router")]:
            out[f"{dst}{ours}.weight"] = sd[f"{src}{theirs}.weight"]
        out.update(experts_from_hf(sd, f"{src}mlp.experts.", f"{dst}ff.experts."))
    return out


def moe_model(make_spec, **moe):
    """make_spec's tiny model (width 16) with 4 experts of 8, top 2, one shared expert."""
    choice = {"name": "moe", "n_experts": 4, "top_k": 2, "n_shared": 1, "hidden": 8, **moe}
    return explorer.build_model(make_spec(model={"vocab_size": 256}, ffn=choice,
                                          activation="silu")).eval()


# -- Hugging Face's Mixtral ----------------------------------------------------------------------

@pytest.mark.parametrize("router", ["softmax_topk_renorm", "topk_softmax"])
def test_whole_model_logits_equal_mixtral(write_spec, router):
    """softmax_topk_renorm is HF's routing; topk_softmax is Mistral's and must give the same."""
    hf = mixtral_reference()
    ours = explorer.build_model(build_spec(write_spec, mixtral_components(router=router)))
    load_exactly(ours, from_mixtral(hf))
    assert_same_logits(ours, hf, tokens(2, 20))


def test_router_without_renormalisation_differs_from_mixtral(write_spec):
    hf = mixtral_reference()
    ours = explorer.build_model(build_spec(write_spec, mixtral_components(router="softmax_topk")))
    load_exactly(ours, from_mixtral(hf))
    ids = tokens(2, 20)
    with torch.no_grad():
        assert not torch.allclose(ours(ids), hf(ids).logits, atol=1e-2)


def test_load_balancing_loss_equals_transformers(write_spec):
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    hf = mixtral_reference()
    ours = explorer.build_model(build_spec(write_spec, mixtral_components(
        aux_loss_coef=1.0, z_loss_coef=0.0)))
    load_exactly(ours, from_mixtral(hf))
    router_logits = []
    for block in ours.trf_blocks:
        block.ff.router.register_forward_hook(lambda m, args, out: router_logits.append(out))
    with torch.no_grad():
        ours(tokens(3, 17))
    for block, logits in zip(ours.trf_blocks, router_logits):
        want = load_balancing_loss_func((logits,), E, K)
        torch.testing.assert_close(block.ff.explorer_aux_loss(), want, atol=1e-6, rtol=0)
    # Summed over layers (each Switch layer has its own loss); HF pools the layers instead.
    total, parts = contracts.aux_loss(ours)
    torch.testing.assert_close(total, sum(load_balancing_loss_func((x,), E, K) for x in router_logits))
    assert [name for name, _ in parts] == [f"trf_blocks.{i}.ff" for i in range(len(router_logits))]
    for (_, part), block in zip(parts, ours.trf_blocks):  # each block's part, by its name
        assert torch.equal(part, block.ff.explorer_aux_loss())


# -- the losses and stats by hand ----------------------------------------------------------------

def test_uniform_router_gives_top_k_and_log_n_squared(make_spec):
    """A zero router: every probability 1/E, so sum_i f_i P_i = top_k / E and the balance loss
    is E * top_k / E = top_k = 2; every logsumexp is log(4), so the z-loss is log(4)^2."""
    moe = moe_model(make_spec, aux_loss_coef=0.5, z_loss_coef=0.25).trf_blocks[0].ff
    with torch.no_grad():
        moe.router.weight.zero_()
        moe(torch.randn(2, 5, 16))
    stats = moe.explorer_stats()
    assert stats["load_balancing_loss"] == pytest.approx(2.0, abs=1e-6)
    assert stats["router_z_loss"] == pytest.approx(math.log(4) ** 2, abs=1e-6)
    assert moe.explorer_aux_loss().item() == pytest.approx(0.5 * 2 + 0.25 * math.log(4) ** 2,
                                                           abs=1e-6)


def test_aux_loss_has_gradient_for_the_router_and_none_without_coefficients(make_spec):
    model = moe_model(make_spec)
    assert contracts.aux_loss(model) == (None, [])  # no forward yet
    model.train()
    model(tokens(2, 12))
    contracts.aux_loss(model)[0].backward()
    assert all(b.ff.router.weight.grad.abs().sum() > 0 for b in model.trf_blocks)
    off = moe_model(make_spec, aux_loss_coef=0.0, z_loss_coef=0.0)
    off(tokens(2, 12))
    assert contracts.aux_loss(off) == (None, [])
    assert contracts.stats(off)  # the stats are still there to log


def test_each_expert_runs_once_on_exactly_its_tokens(make_spec):
    """Routing per expert, not every expert on every token: the rows each expert sees are the
    tokens that chose it, N * top_k rows in all, and its load is its share of them."""
    moe = moe_model(make_spec).trf_blocks[0].ff
    calls = {e: [] for e in range(4)}
    for e, expert in enumerate(moe.experts):
        expert.register_forward_hook(lambda m, args, out, e=e: calls[e].append(args[0].shape[0]))
    x = torch.randn(3, 7, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, _, chosen = moe.route(moe.router(x.reshape(21, 16)))
        moe(x)
    for e in range(4):
        want = int((chosen == e).sum())
        assert calls[e] == ([want] if want else [])
    assert sum(sum(c) for c in calls.values()) == 21 * 2
    load = moe.explorer_stats()["expert_load"]
    assert load == pytest.approx([float((chosen == e).sum()) / 42 for e in range(4)])


def test_moe_output_is_the_weighted_sum_of_its_experts_by_hand(make_spec):
    moe = moe_model(make_spec, router="softmax_topk", routed_scaling=2.5).trf_blocks[0].ff
    x = torch.randn(1, 3, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = moe(x)[0]
        probs = torch.softmax(x[0] @ moe.router.weight.T, dim=-1)  # (3, 4)
        for n in range(3):
            top = probs[n].topk(2)
            want = moe.shared(x[0, n]) + sum(2.5 * w * moe.experts[e](x[0, n])
                                             for w, e in zip(top.values, top.indices))
            torch.testing.assert_close(got[n], want, atol=1e-6, rtol=0)


# -- active parameters ---------------------------------------------------------------------------

def test_active_parameters_by_hand(make_spec):
    """Width 16, experts of 8: router 16*4 = 64, a glu expert 3*16*8 = 384; one shared expert and
    two routed ones per token: 64 + 384 + 2*384 = 1216 of the 64 + 5*384 = 1984 it holds."""
    model = moe_model(make_spec)
    moe = model.trf_blocks[0].ff
    assert sum(p.numel() for p in moe.parameters()) == 1984
    assert moe.active_parameters() == 1216
    total = sum(p.numel() for p in model.parameters())
    assert contracts.active_parameter_count(model) == total - 2 * (1984 - 1216)
    dense = explorer.build_model(make_spec(model={"vocab_size": 256}))
    assert contracts.active_parameter_count(dense) == sum(p.numel() for p in dense.parameters())


def test_active_parameters_count_a_tied_head_once(make_spec):
    spec = make_spec(model={"vocab_size": 256}, weight_tying="tied",
                     ffn={"name": "moe", "n_experts": 4, "top_k": 1, "hidden": 8})
    model = explorer.build_model(spec)
    unique = sum(p.numel() for p in model.parameters())  # parameters() yields a tied one once
    assert contracts.active_parameter_count(model) == unique - 2 * (4 - 1) * 384


# -- KV cache, shape-only devices, copies -----------------------------------------------------------

def test_cached_generation_gives_the_same_tokens(make_spec):
    model = moe_model(make_spec)
    prompt = tokens(2, 9)
    cached = explorer.generate(model, prompt, max_new_tokens=15)
    assert torch.equal(cached, explorer.generate(model, prompt, 15, use_cache=False))


def test_meta_device_sends_every_assignment_through_one_stand_in_expert(make_spec):
    """Shapes only: the 10 tokens x top 2 = 20 assignments go through expert 0 in one pass (not
    one pass per expert: DeepSeek-V3 has 256 per layer, 58 layers)."""
    model = explorer.build_model(make_spec(model={"vocab_size": 256}, activation="silu", ffn={
        "name": "moe", "n_experts": 4, "top_k": 2, "hidden": 8}), device="meta")
    rows = []
    for e, expert in enumerate(model.trf_blocks[0].ff.experts):
        expert.register_forward_hook(lambda m, args, out, e=e: rows.append((e, args[0].shape[0])))
    logits = model(torch.zeros(1, 10, dtype=torch.long, device="meta"))
    assert logits.shape == (1, 10, 256) and rows == [(0, 20)]
    assert model.trf_blocks[0].ff.explorer_stats() == {}


def test_shape_only_costs_equal_a_real_routing(make_spec):
    """Whatever the routing, every assignment goes through one expert: the stand-in pass counts
    the FLOPs (forward and backward) and saves the activation bytes of a real forward exactly.
    By hand, per MoE layer forward: experts 2 * (10 * 2) * 3 * 16 * 8 = 15,360 FLOPs, router
    2 * 10 * 16 * 4 = 1,280."""
    from torch.utils.flop_counter import FlopCounterMode

    from explorer.measure.activations import saved_activation_bytes

    spec = make_spec(model={"vocab_size": 256}, activation="silu", ffn={
        "name": "moe", "n_experts": 4, "top_k": 2, "hidden": 8})

    def flops(model, device):
        moe = model.trf_blocks[0].ff.train()
        x = torch.randn(1, 10, 16, device=device, requires_grad=True)
        with FlopCounterMode(display=False) as counter:
            moe(x).sum().backward()
        with FlopCounterMode(display=False) as forward:
            moe(x.detach())
        return forward.get_total_flops(), counter.get_total_flops()

    real, meta = explorer.build_model(spec), explorer.build_model(spec, device="meta")
    assert flops(meta, "meta") == flops(real, "cpu")
    assert flops(meta, "meta")[0] == 15_360 + 1_280
    # Fake tensors (the memory analysis's device) run the CPU's attention kernels, as real ones.
    with explorer.AnalysisContext(spec).fake_model() as fake:
        shape_only = saved_activation_bytes(fake, 2, 12)["total"]
    assert shape_only == saved_activation_bytes(real, 2, 12)["total"]


def test_a_model_copies_after_a_forward(make_spec):
    import copy

    model = moe_model(make_spec).train()
    model(tokens(1, 8))
    twin = copy.deepcopy(model)  # gradflow copies the model after its first forward
    assert twin.trf_blocks[0].ff.explorer_aux_loss() is None
    assert model.trf_blocks[0].ff.explorer_aux_loss() is not None


# -- spec errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("moe, key, fragment", [
    ({"top_k": 5}, "top_k", r"must be in 1\.\.n_experts \(4\), got 5"),
    ({"top_k": 0}, "top_k", r"must be >= 1, got 0"),
    ({"n_experts": 0, "top_k": 1}, "n_experts", "must be >= 1, got 0"),
    ({"n_shared": -1}, "n_shared", "must be >= 0, got -1"),
    ({"hidden": -8}, "hidden", "must be >= 0, got -8"),
    ({"routed_scaling": 0.0}, "routed_scaling", "must be > 0, got 0.0"),
    ({"aux_loss_coef": -0.1}, "aux_loss_coef", r"must be >= 0, got -0\.1"),
    ({"z_loss_coef": float("nan")}, "z_loss_coef", "expected a finite number, got nan"),
])
def test_bad_moe_values_are_one_line_spec_errors(make_spec, moe, key, fragment):
    """Refused when the spec loads, before any model is built."""
    with pytest.raises(explorer.SpecError, match=rf"spec\d+\.yaml: components\.ffn\.{key}: {fragment}"):
        make_spec(ffn={"name": "moe", "n_experts": 4, "hidden": 8, **moe})


def test_bad_router_is_refused_when_the_spec_loads(make_spec):
    with pytest.raises(explorer.SpecError, match=r"components\.ffn\.router: 'mixtral' is not one of"):
        make_spec(ffn={"name": "moe", "router": "mixtral"})

