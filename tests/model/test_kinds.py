"""Analyses find a block's sublayers by the kind the registry tagged them with, and read an
attention's KV-cache layout from the module: third-party blocks and attentions get the same
figures as the built-ins, whatever they name things."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import explorer
from tests.helpers import TINY_MODEL
from explorer import Component, Param, hookimpl
from explorer.model.contracts import causal_mask
from explorer.plugins.analyses.gradflow import SAMPLE_TEXT, render
from explorer.plugins.analyses.memory import render as memory_render

# make_spec's tiny model: context 32, width 16, 4 heads, 2 blocks.
S, H, NH, L = 32, 16, 4, 2


class NamedLikeGPT2(nn.Module):
    """A pre-norm block whose sublayers are ``attn`` and ``mlp`` (and ``ln_1``/``ln_2``), as
    Hugging Face's GPT-2 names them; ``ffn: false`` leaves the feed-forward out."""

    def __init__(self, ctx, ffn):
        super().__init__()
        self.attn = ctx.make("attention")
        self.mlp = ctx.make("ffn") if ffn else None
        self.ln_1 = ctx.make("norm", dim=ctx.config.emb_dim)
        self.ln_2 = ctx.make("norm", dim=ctx.config.emb_dim)

    def forward(self, x, pos, positions, cache=None):
        x = x + self.attn(self.ln_1(x), pos, positions, cache=cache)
        return x + self.mlp(self.ln_2(x)) if self.mlp is not None else x


class NarrowAttention(nn.Module):
    """4 query heads and ``kv_heads`` key/value heads, all ``width`` wide (not emb_dim /
    n_heads); a sliding window of ``even_window`` on even layers only (local/global, as Gemma
    alternates them); ``latent`` > 0 claims to cache that many values per token instead."""

    def __init__(self, ctx, kv_heads, width, even_window, latent):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = ctx.config.n_heads, kv_heads, width
        self.window = even_window if ctx.layer % 2 == 0 else 0
        if latent:
            self.kv_values_per_token = latent
        d = ctx.config.emb_dim
        self.q = nn.Linear(d, self.n_heads * width)
        self.kv = nn.Linear(d, 2 * kv_heads * width)
        self.out = nn.Linear(self.n_heads * width, d)

    def forward(self, x, pos, positions, cache=None):
        b, t, _ = x.shape
        q = self.q(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k, v = self.kv(x).view(b, t, 2 * self.n_kv_heads, self.head_dim).transpose(1, 2).chunk(2, 1)
        q, k = pos.rotate(q, k, positions)  # (B, nkv, T, hs) each
        k_positions = positions
        if cache is not None:
            k, v, k_positions = cache.update(k, v, positions, self.window)
        group = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)  # (B, nh, Tk, hs)
        visible = ~causal_mask(positions, k_positions, self.window)  # (T, Tk)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=visible)  # (B, nh, T, hs)
        return self.out(out.transpose(1, 2).reshape(b, t, -1))  # (B, T, nh*hs) -> (B, T, C)


class Forgetful(NarrowAttention):
    """Does not expose its window."""

    def __init__(self, ctx):
        super().__init__(ctx, 2, 3, 0, 0)
        del self.window

    def forward(self, x, pos, positions, cache=None):
        self.window = 0
        try:
            return super().forward(x, pos, positions, cache)
        finally:
            del self.window


class ThirdParty:
    @hookimpl
    def explorer_components(self):
        return [
            Component(kind="residual", name="gpt2_names", factory=NamedLikeGPT2,
                      params=(Param("ffn", bool, True, "with a feed-forward sublayer"),)),
            Component(kind="attention", name="narrow", factory=NarrowAttention, params=(
                Param("kv_heads", int, 2, "key/value heads"),
                Param("width", int, 3, "head width"),
                Param("even_window", int, 0, "sliding window on even layers (0: none)"),
                Param("latent", int, 0, "values cached per token, if not keys and values"))),
            Component(kind="attention", name="forgetful", factory=Forgetful),
        ]


@pytest.fixture
def make_spec(write_spec):
    """make_spec's tiny model (tests/conftest.py) with the byte tokenizer and the plugin."""
    manager = explorer.get_plugin_manager(entry_points=False)
    manager.register(ThirdParty(), "third-party")

    def make(model=None, **components):
        doc = {"name": "tiny", "seed": 123, "tokenizer": "bytes",
               "model": {**TINY_MODEL, "vocab_size": 256, **(model or {})},
               "components": components, "analyses": {"gradflow": {"steps": 0}}}
        return explorer.load_spec(write_spec(doc), plugins=manager)

    return make


def _mean_abs(modules):
    grads = [p.grad for m in modules for p in m.parameters() if p.dim() >= 2]
    return sum(g.abs().sum().item() for g in grads) / sum(g.numel() for g in grads)


def test_gradflow_finds_attention_and_ffn_by_kind(make_spec):
    spec = make_spec(residual="gpt2_names")
    result = explorer.analyze(spec, only=["gradflow"])["analyses"]["gradflow"]
    model = explorer.build_model(spec)
    ids = torch.tensor([list(SAMPLE_TEXT.encode())[: S + 1]])
    F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten()).backward()
    for i, block in enumerate(model.trf_blocks):
        figures = result["per_block"][i]
        assert set(figures) == {"all", "attention", "ffn"}
        assert figures["attention"] == pytest.approx(_mean_abs([block.attn]), rel=1e-6)
        assert figures["ffn"] == pytest.approx(_mean_abs([block.mlp]), rel=1e-6)
        assert figures["all"] == pytest.approx(_mean_abs([block]), rel=1e-6)
    assert "0.000e+00" not in render(result)


def test_gradflow_shows_na_for_a_sublayer_a_block_lacks(make_spec):
    spec = make_spec(residual={"name": "gpt2_names", "ffn": False})
    result = explorer.analyze(spec, only=["gradflow"])["analyses"]["gradflow"]
    assert all("ffn" not in block for block in result["per_block"])
    rows = render(result).splitlines()
    assert rows[1] == "block  mean|grad|  (attention / ffn)"
    assert rows[2].endswith(f"({result['per_block'][0]['attention']:.3e} / n/a)")


def _kv(make_spec, batch=3, **attention):
    spec = make_spec(attention={"name": "narrow", **attention})
    spec.analyses["memory"] = {"batch_size": batch, "seq_len": 8}
    report = explorer.analyze(spec, only=["memory"])
    assert report["failures"] == {}
    return report["analyses"]["memory"]


def test_kv_cache_reads_a_third_party_attention(make_spec):
    memory = _kv(make_spec)
    kv = memory["kv_cache"]
    # 2 KV heads of width 3 (the spec's head_dim would be 16 / 4 = 4, with 4 heads), K and V.
    assert (kv["n_kv_heads"], kv["head_dim"], kv["window"], kv["tokens"]) == (2, 3, None, S)
    assert kv["bytes_per_token"] == {"fp32": L * 2 * 2 * 3 * 4, "bf16": L * 2 * 2 * 3 * 2}
    assert kv["bytes_full_context"]["fp32"] == 3 * S * L * 2 * 2 * 3 * 4
    assert "per_layer" not in kv
    assert memory["inference_bytes"]["fp32"] == memory["weights_bytes"]["fp32"] + 3 * S * 96


def test_kv_cache_per_layer_when_layers_differ(make_spec):
    kv = _kv(make_spec, batch=1, even_window=8)["kv_cache"]
    values = 2 * 2 * 3  # per layer and token
    assert [(l["layer"], l["window"], l["tokens"]) for l in kv["per_layer"]] == [(0, 8, 8), (1, 0, S)]
    assert kv["n_kv_heads"] is None and kv["tokens"] == S
    assert kv["bytes_per_token"]["fp32"] == L * values * 4
    assert kv["bytes_full_context"]["fp32"] == values * 4 * (8 + S)  # the window caps layer 0
    rendered = memory_render(_kv(make_spec, batch=1, even_window=8))
    assert "KV cache (layers differ)" in rendered
    assert "  layer 0: 2 KV heads x 3, window 8, 12 values per token, 8 tokens" in rendered


def test_kv_cache_uses_what_a_latent_attention_says_it_caches(make_spec):
    kv = _kv(make_spec, batch=1, latent=5)["kv_cache"]
    assert kv["bytes_per_token"] == {"fp32": L * 5 * 4, "bf16": L * 5 * 2}


def test_attention_without_its_layout_is_one_line(make_spec):
    spec = make_spec(attention="forgetful")
    report = explorer.analyze(spec, only=["memory"])
    assert report["failures"]["memory"] == (
        "trf_blocks.0.att (Forgetful) does not expose window as an int: an attention exposes "
        "n_kv_heads, head_dim, window (explorer.model.contracts)")
