"""Attention ``head_dim``: heads whose size is not emb_dim / n_heads (Gemma 2, Qwen3), against a
hand-written attention and Hugging Face's Qwen3, through RoPE, QK-norm, ALiBi, the KV cache, the
manual and fused paths, validation and the analyses that read the attention's head size."""

import itertools

import pytest
import torch

import explorer
from explorer.model.generation import generate
from tests.helpers.hf_reference import (assert_same_logits, build_spec, from_llama_like, load_exactly,
                          randomize, tokens, transformers)

pytestmark = pytest.mark.usefixtures("one_thread")

HS = 6  # the head size under test: emb_dim 16 / n_heads 4 would be 4


def build(make_spec, positional="rope", seed=0, **attention):
    choice = {"name": "gqa", "n_kv_heads": 2, "head_dim": HS, "out_bias": False, **attention}
    spec = make_spec(positional=positional, attention=choice, norm="rmsnorm")
    return explorer.build_model(spec, seed=seed).eval()


def rotate_half(x, position, theta=10000.0):
    """RoPE on one vector of size hs at ``position``, written out pair by pair (j, j + hs/2)."""
    hs = x.shape[-1]
    out = x.clone()
    for j in range(hs // 2):
        angle = torch.tensor(position * theta ** (-2 * j / hs))
        a, b = x[..., j], x[..., j + hs // 2]
        out[..., j] = a * angle.cos() - b * angle.sin()
        out[..., j + hs // 2] = b * angle.cos() + a * angle.sin()
    return out


def rms(x, weight, eps=1e-6):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def hand_written(att, x, positional, qk_norm):
    """Causal grouped-query attention with heads of HS, head by head, position by position."""
    b, t, _ = x.shape
    q = att.W_query(x).view(b, t, 4, HS)
    k = att.W_key(x).view(b, t, 2, HS)
    v = att.W_value(x).view(b, t, 2, HS)
    if qk_norm:
        q, k = rms(q, att.q_norm.weight), rms(k, att.k_norm.weight)
    if positional == "rope":
        q = torch.stack([rotate_half(q[:, p], p) for p in range(t)], dim=1)
        k = torch.stack([rotate_half(k[:, p], p) for p in range(t)], dim=1)
    slopes = [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8]  # ALiBi's, for 4 heads
    heads = []
    for h in range(4):
        g = h // 2  # two query heads share each key/value head
        rows = []
        for i in range(t):
            scores = torch.stack([q[:, i, h] @ k[:, j, g].T for j in range(i + 1)], -1)
            scores = scores.diagonal(dim1=0, dim2=1).T if b > 1 else scores  # (B, i+1)
            scores = scores / HS ** 0.5
            if positional == "alibi":
                scores = scores - slopes[h] * torch.tensor([i - j for j in range(i + 1)])
            weights = torch.softmax(scores, dim=-1)  # (B, i+1)
            rows.append(torch.einsum("bj,bjd->bd", weights, v[:, : i + 1, g]))
        heads.append(torch.stack(rows, dim=1))  # (B, T, HS)
    return att.out_proj(torch.cat(heads, dim=-1))  # (B, T, 4 * HS) -> (B, T, 16)


@pytest.mark.parametrize("positional, qk_norm, impl", list(itertools.product(
    ["rope", "alibi", "none"], [False, True], ["manual", "sdpa"])))
def test_gqa_with_its_own_head_size_equals_a_hand_written_attention(make_spec, positional,
                                                                     qk_norm, impl):
    model = build(make_spec, positional, qk_norm=qk_norm, impl=impl)
    att = model.trf_blocks[0].att
    assert (att.W_query.weight.shape, att.W_key.weight.shape, att.out_proj.weight.shape) == (
        (4 * HS, 16), (2 * HS, 16), (16, 4 * HS))
    x = torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = att(x, model.pos_emb, torch.arange(7))
        torch.testing.assert_close(got, hand_written(att, x, positional, qk_norm))


def test_head_dim_parameter_count_by_hand(make_spec):
    """q and out: 2 * 16 * 4*6; k and v: 2 * 16 * 2*6; QK-norms 2 * 6 (rmsnorm)."""
    att = build(make_spec, qk_norm=True).trf_blocks[0].att
    assert sum(p.numel() for p in att.parameters()) == 2 * 16 * 24 + 2 * 16 * 12 + 2 * 6


@pytest.mark.parametrize("positional", ["rope", "alibi"])
def test_cached_generation_gives_the_same_tokens(make_spec, positional):
    model = build(make_spec, positional, window=5)
    prompt = tokens(1, 4)
    cached = generate(model, prompt, max_new_tokens=12)
    uncached = generate(model, prompt, max_new_tokens=12, use_cache=False)
    assert torch.equal(cached, uncached)


def test_rope_checks_the_attention_head_size_not_emb_dim_over_n_heads(make_spec):
    # emb_dim 12 / n_heads 4 = 3 is odd, but the attention's heads are 6 wide: RoPE can rotate.
    spec = make_spec(model={"emb_dim": 12}, positional="rope",
                     attention={"name": "mha", "head_dim": 6})
    model = explorer.build_model(spec).eval()
    assert model.trf_blocks[0].att.head_dim == 6
    assert model(tokens(1, 5)).shape == (1, 5, 256)
    with pytest.raises(explorer.SpecError, match=r"components\.positional: rope rotates pairs of "
                       r"dimensions, but the head size is odd: the attention's head_dim = 5; "
                       r"choose an even components\.attention\.head_dim$"):
        make_spec(positional="rope", attention={"name": "gqa", "head_dim": 5})


def test_negative_head_dim_is_refused_when_the_spec_loads(make_spec):
    with pytest.raises(explorer.SpecError, match=r"components\.attention\.head_dim: must be >= 0, "
                       r"got -2$"):
        make_spec(attention={"name": "mha", "head_dim": -2})


def test_analyses_read_the_attention_head_size(make_spec):
    """KV cache: 2 layers x 2 (K, V) x 2 heads x 6 values; flops: the score and value terms
    4 * L * s * n_heads * head_dim; the closed form equals FlopCounterMode's count."""
    spec = make_spec(positional="rope", attention={"name": "gqa", "n_kv_heads": 2, "head_dim": 6})
    report = explorer.analyze(spec, only=["memory", "flops"])
    assert not report["failures"]
    kv = report["analyses"]["memory"]["kv_cache"]
    assert (kv["n_kv_heads"], kv["head_dim"]) == (2, 6)
    assert kv["bytes_per_token"]["fp32"] == 4 * 2 * 2 * 2 * 6
    flops = report["analyses"]["flops"]
    s = 32
    assert flops["forward_per_token"]["attention_full"] == 4 * 2 * s * 4 * 6
    assert flops["measured"]["per_token"]["forward"] == flops["forward_per_token"]["total"]


# -- Hugging Face's Qwen3: rmsnorm + silu + glu + rope + gqa{qk_norm, head_dim} + pre_norm ---------

def qwen3_reference():
    config = transformers.Qwen3Config(
        vocab_size=256, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=12, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
        attn_implementation="eager")
    torch.manual_seed(0)
    return randomize(transformers.Qwen3ForCausalLM(config))


QWEN3 = {"norm": {"name": "rmsnorm", "eps": 1e-6}, "activation": "silu",
         "ffn": {"name": "glu", "hidden": 40},
         "attention": {"name": "gqa", "n_kv_heads": 2, "head_dim": 12, "qk_norm": True,
                       "out_bias": False},
         "positional": {"name": "rope", "theta": 10000.0}, "residual": "pre_norm",
         "weight_tying": "none"}


@pytest.mark.parametrize("impl", ["auto", "manual"])
def test_logits_equal_qwen3(write_spec, impl):
    """Heads of 12 at width 32 with 4 heads (32 / 4 = 8): q 48 wide, k and v 24, o 48 -> 32."""
    hf = qwen3_reference()
    ours = explorer.build_model(build_spec(write_spec, {**QWEN3, "attention": {
        **QWEN3["attention"], "impl": impl}}))
    load_exactly(ours, from_llama_like(hf, qk_norm=True))
    assert_same_logits(ours, hf, tokens(2, 20))


def test_qwen3_needs_the_head_size(write_spec):
    """With emb_dim / n_heads = 8 the checkpoint's 48-wide query projection does not fit."""
    ours = explorer.build_model(build_spec(write_spec, {**QWEN3, "attention": {
        **QWEN3["attention"], "head_dim": 0}}))
    assert ours.trf_blocks[0].att.W_query.weight.shape == (32, 32)
