"""attention: mla against Hugging Face's DeepSeek-V2 (dense FFN, and with MoE + shared experts),
its KV cache of latents, RoPE sized by the rotated tensor, the contract figures, spec errors."""

import pytest
import torch

import explorer
from explorer.model import contracts
from explorer.model.kv_cache import ModelCache
from tests.helpers.hf_reference import (assert_same_logits, build_spec, experts_from_hf, load_exactly,
                          randomize, tokens, transformers)
from tests.helpers.hf_reference import DEEPSEEK_MLA as MLA, deepseek_components, from_deepseek


pytestmark = pytest.mark.usefixtures("one_thread")


def deepseek_reference(q_lora_rank, moe):
    """A tiny DeepSeek-V2: dense gated FFNs of 48, or (moe) 4 experts of 8, top 2 by plain
    softmax, two shared experts, routed_scaling_factor 2.5, in every layer."""
    config = transformers.DeepseekV2Config(
        vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, q_lora_rank=q_lora_rank, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_theta=10000.0, first_k_dense_replace=0 if moe else 2,
        n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=2, moe_intermediate_size=8,
        routed_scaling_factor=2.5, tie_word_embeddings=False, attn_implementation="eager", **MLA)
    torch.manual_seed(0)
    return randomize(transformers.DeepseekV2ForCausalLM(config))


def deepseek_pair(write_spec, q_lora_rank, moe, **attention):
    hf = deepseek_reference(q_lora_rank, moe)
    spec = build_spec(write_spec, deepseek_components(q_lora_rank, moe, **attention))
    return load_exactly(explorer.build_model(spec), from_deepseek(hf)), hf


# -- Hugging Face's DeepSeek-V2 --------------------------------------------------------------------

@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("q_lora_rank", [None, 10])
def test_logits_equal_deepseek_v2_with_a_dense_ffn(write_spec, q_lora_rank, impl):
    ours, hf = deepseek_pair(write_spec, q_lora_rank, moe=False, impl=impl)
    assert_same_logits(ours, hf, tokens(2, 20))


def test_logits_equal_deepseek_v2_with_moe_and_shared_experts(write_spec):
    ours, hf = deepseek_pair(write_spec, 10, moe=True)
    assert_same_logits(ours, hf, tokens(2, 20))


def test_without_the_rope_permutation_the_logits_differ(write_spec):
    """The permutation is what makes the interleaved and the rotate-half RoPE agree."""
    hf = deepseek_reference(None, moe=False)
    ours = explorer.build_model(build_spec(write_spec, deepseek_components(None, moe=False)))
    tensors = from_deepseek(hf)
    for i in range(2):
        tensors[f"trf_blocks.{i}.att.kv_down.weight"] = hf.state_dict()[
            f"model.layers.{i}.self_attn.kv_a_proj_with_mqa.weight"]
    load_exactly(ours, tensors)
    ids = tokens(2, 20)
    with torch.no_grad():
        assert not torch.allclose(ours(ids), hf(ids).logits, atol=1e-2)


# -- the KV cache holds the latent ------------------------------------------------------------------

def mla_spec(make_spec, window=0, positional="rope", **attention):
    return make_spec(model={"vocab_size": 256}, positional=positional, norm="rmsnorm",
                     attention={"name": "mla", "kv_lora_rank": 8, "q_lora_rank": 6,
                                "qk_nope_head_dim": 4, "qk_rope_head_dim": 4, "v_head_dim": 6,
                                "window": window, **attention})


@pytest.mark.parametrize("positional", ["rope", "alibi", "learned"])
@pytest.mark.parametrize("window", [0, 4])
def test_cached_generation_gives_the_same_tokens(make_spec, window, positional):
    model = explorer.build_model(mla_spec(make_spec, window, positional)).eval()
    prompt = tokens(2, 10)  # longer than the window: the ring buffer wraps during the prompt
    cached = explorer.generate(model, prompt, max_new_tokens=15)
    assert torch.equal(cached, explorer.generate(model, prompt, 15, use_cache=False))


def test_cache_holds_the_latent_and_the_rope_key_only(make_spec):
    """kv_lora_rank 8 + qk_rope_head_dim 4 = 12 values per token and layer, where caching the
    expanded keys and values of 4 heads would hold 4 * (4 + 4) + 4 * 6 = 56."""
    model = explorer.build_model(mla_spec(make_spec)).eval()
    att = model.trf_blocks[0].att
    assert (att.kv_values_per_token, att.n_kv_heads, att.head_dim, att.window) == (12, 1, 8, 0)
    assert contracts.kv_values_per_token(att) == 12
    cache = ModelCache(2, 16)
    with torch.no_grad():
        model(tokens(3, 5), cache=cache)
    layer = cache[0]
    assert layer.keys.shape == (3, 1, 16, 8) and layer.values.shape == (3, 1, 16, 4)
    assert layer.keys.shape[-1] + layer.values.shape[-1] == att.kv_values_per_token


def test_kv_values_per_token_of_grouped_query_attention(make_spec):
    model = explorer.build_model(make_spec(attention={"name": "gqa", "n_kv_heads": 2}))
    assert contracts.kv_values_per_token(model.trf_blocks[0].att) == 2 * 2 * 4  # K and V


# -- RoPE sized by what it rotates -------------------------------------------------------------

def test_rope_builds_frequencies_for_the_size_it_rotates(make_spec):
    """Head size 4 (16 / 4 heads); a rotated size of 2 uses theta^0 = 1 rad per position, and
    size 4 the buffer's [1, 1/100]: position 3 turns (1, 0) by 3 rad, and dim pair 1 by 0.03."""
    rope = explorer.build_model(make_spec(positional="rope")).pos_emb
    two = torch.tensor([[[[1.0, 0.0]]]])  # (1, 1, 1, 2)
    q, _ = rope.rotate(two, two, torch.tensor([3]))
    torch.testing.assert_close(q.flatten(), torch.tensor([torch.cos(torch.tensor(3.0)),
                                                          torch.sin(torch.tensor(3.0))]))
    four = torch.tensor([[[[0.0, 1.0, 0.0, 0.0]]]])
    q, _ = rope.rotate(four, four, torch.tensor([3]))
    want = torch.tensor([0.0, torch.cos(torch.tensor(0.03)), 0.0, torch.sin(torch.tensor(0.03))])
    torch.testing.assert_close(q.flatten(), want)
    assert rope.frequencies(4, torch.device("cpu")) is rope.inv_freq  # the head size: the buffer
    assert rope.frequencies(2, torch.device("cpu")) is rope.frequencies(2, torch.device("cpu"))
    with pytest.raises(ValueError, match="rotated size is odd: 3"):
        rope.rotate(torch.ones(1, 1, 1, 3), torch.ones(1, 1, 1, 3), torch.tensor([0]))


# -- parameters and errors -------------------------------------------------------------------------

def test_parameter_count_by_hand(make_spec):
    """Width 16, 4 heads: q_down 16*6, q_norm 6, q_up 6*4*8, kv_down 16*12, kv_norm 8,
    kv_up 8*4*10, out_proj 24*16 = 96 + 6 + 192 + 192 + 8 + 320 + 384 = 1198."""
    att = explorer.build_model(mla_spec(make_spec)).trf_blocks[0].att
    assert sum(p.numel() for p in att.parameters()) == 1198
    assert [n for n, _ in att.named_parameters()] == [
        "q_down.weight", "q_norm.weight", "q_up.weight", "kv_down.weight", "kv_norm.weight",
        "kv_up.weight", "out_proj.weight"]


@pytest.mark.parametrize("attention, key, fragment", [
    ({"kv_lora_rank": 0}, "kv_lora_rank", "must be >= 1, got 0"),
    ({"q_lora_rank": -1}, "q_lora_rank", "must be >= 0, got -1"),
    ({"qk_rope_head_dim": 3}, "qk_rope_head_dim", "must be even, got 3; RoPE rotates pairs"),
    ({"qk_rope_head_dim": 0}, "qk_rope_head_dim", "must be >= 2, got 0"),
    ({"v_head_dim": 0}, "v_head_dim", "must be >= 1, got 0"),
    ({"window": -2}, "window", "must be >= 0, got -2"),
    ({"softcap": 30.0, "impl": "sdpa"}, "impl", r"sdpa cannot soft-cap the scores \(softcap 30.0\)"),
])
def test_bad_mla_values_are_one_line_spec_errors(make_spec, attention, key, fragment):
    """Refused when the spec loads, before any model is built."""
    with pytest.raises(explorer.SpecError,
                       match=rf"spec\d+\.yaml: components\.attention\.{key}: {fragment}"):
        mla_spec(make_spec, **attention)


def test_explorer_plugins_lists_mla_and_moe(capsys):
    from explorer.cli import main

    for kind, name, param in [("attention", "mla", "kv_lora_rank: int = 512"),
                              ("ffn", "moe", "top_k: int = 2")]:
        with pytest.raises(SystemExit) as info:
            main(["plugins", "--kind", kind])
        out = capsys.readouterr().out
        assert info.value.code == 0
        assert f"\n  {name} " in out and param in out and f"from explorer.plugins.{kind}" in out
