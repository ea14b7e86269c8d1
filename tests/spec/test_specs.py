"""The shipped specs: each loads, builds and runs; parameter counts against closed forms.

Counts come from the params analysis, which builds on the meta device (no weights), so even
the GPT-2-small-sized specs are counted in milliseconds.
"""

import math

import pytest
import torch
from torch.nn import functional as F

import explorer
from tests.helpers import ROOT, SHRINK, load_shrunk, shrink, slow_marked

SPECS = ROOT / "specs"
ALL_SPECS = sorted(SPECS.rglob("*.yaml"))
ABLATIONS = sorted((SPECS / "ablations").glob("*.yaml"))

# Shrinks any shipped spec to a model that builds in milliseconds: 8 heads divide every spec's
# n_kv_heads choices (1, 4 and the real models' 8).

# gpt2-small (the book's layout, formulas.md): V vocab, S positions, H width, L blocks.
V, S, H, L = 50257, 1024, 768, 12
D = 64  # head size, 12 heads
MLP = 2 * H * 4 * H + 4 * H + H  # both Linear layers with biases
MHA = 4 * H * H + H  # W_query, W_key, W_value without bias; out_proj with bias
LN = 2 * H  # scale + shift
GPT2_SMALL = V * H + S * H + L * (MHA + MLP + 2 * LN) + LN + V * H


def params(spec):
    return explorer.analyze(spec, only=["params"])["analyses"]["params"]


def gqa_attention(k):
    """q and out h*a*d each, k and v h*k*d each; only out_proj has a bias."""
    return 2 * H * H + 2 * H * k * D + H


def llama_hidden(h, multiple_of=256):
    """Llama's FFN size: 2/3 of 4h, rounded up to a multiple of ``multiple_of``."""
    return multiple_of * math.ceil(int(2 * 4 * h / 3) / multiple_of)


# Each ablation: what it changes, and its parameter count as gpt2-small's plus a closed-form delta.
ABLATION_CHANGES = {
    "post_norm": ({"residual": "post_norm"}, 0),
    "no_shortcut": ({"residual": "none"}, 0),
    "rmsnorm": ({"norm": "rmsnorm"}, -(2 * L + 1) * H),  # no shift vector
    "relu": ({"activation": "relu"}, 0),
    "swiglu": ({"ffn": "glu", "activation": "silu"}, L * (3 * H * llama_hidden(H) - MLP)),
    "gqa": ({"attention": "gqa"}, L * (gqa_attention(4) - MHA)),
    "mqa": ({"attention": "gqa"}, L * (gqa_attention(1) - MHA)),
    "rope": ({"positional": "rope"}, -S * H),
    "alibi": ({"positional": "alibi"}, -S * H),
    "nope": ({"positional": "none"}, -S * H),
    "tied": ({"weight_tying": "tied"}, -V * H),
    "parallel": ({"residual": "parallel"}, -L * LN),  # one shared norm per block
    "local_global": ({}, 0),  # windows on odd layers (layers:): the same weights
}


@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: str(p.relative_to(SPECS)))
def test_every_spec_loads_and_validates(path):
    spec = explorer.load_spec(path)
    assert spec.source == str(path)
    assert set(spec.components) == set(explorer.COMPONENT_KINDS)
    assert spec.model.emb_dim % spec.model.n_heads == 0


@pytest.mark.parametrize("path", slow_marked(ALL_SPECS),
                         ids=lambda p: str(p.relative_to(SPECS)))
def test_every_spec_shrunk_builds_predicts_causally_and_trains_every_parameter(path):
    spec = load_shrunk(path, shrink(path))
    model = explorer.build_model(spec).eval()
    ids = torch.randint(0, 300, (2, 32), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, -1] = (ids[:, -1] + 1) % 300
    ran = set()  # a mixture of experts runs only the experts some token chose
    hooks = [module.register_forward_hook(lambda m, args, out: ran.add(m))
             for module in model.modules()]
    logits = model(ids)
    for hook in hooks:  # only what ran for ``ids``, the forward the loss comes from
        hook.remove()
    with torch.no_grad():
        logits_changed = model(changed)
    # Changing the last token changes only the last position's prediction.
    torch.testing.assert_close(logits[:, :-1], logits_changed[:, :-1])
    assert not torch.allclose(logits[:, -1], logits_changed[:, -1])
    # Every parameter of every module that ran takes part: the loss has a nonzero gradient. The
    # loss covers every position (the last one's target wraps around): an expert only the last
    # tokens chose (Qwen3-30B-A3B's 8 of 128 per token) ran, and takes part.
    F.cross_entropy(logits.flatten(0, 1), ids.roll(-1, dims=1).flatten()).backward()
    owner = {f"{name}.{p}": m for name, m in model.named_modules()
             for p, _ in m.named_parameters(recurse=False)}
    unused = [name for name, p in model.named_parameters()
              if (p.grad is None or not p.grad.any()) and owner[name] in ran]
    assert unused == []


def test_tiny_is_tiny_and_runs_at_full_size():
    spec = explorer.load_spec(SPECS / "tiny.yaml")
    v, s, h, n = 256, 128, 64, 6
    assert (spec.tokenizer, spec.model.vocab_size, spec.model.context_length) == ("bytes", v, s)
    block = (4 * h * h + h) + (2 * h * 4 * h + 5 * h) + 4 * h
    assert params(spec)["total"] == v * h + s * h + n * block + 2 * h + v * h == 339_840
    model = explorer.build_model(spec)
    ids = torch.tensor([explorer.get_tokenizer("bytes").encode("Every effort moves you")])
    assert model(ids).shape == (1, 22, 256)


@pytest.mark.parametrize("name", sorted(ABLATION_CHANGES))
def test_ablation_changes_only_what_it_names_with_closed_form_count(name):
    base = explorer.load_spec(SPECS / "gpt2_small.yaml")
    spec = explorer.load_spec(SPECS / "ablations" / f"{name}.yaml")
    changes, delta = ABLATION_CHANGES[name]
    assert spec.name != base.name and spec.model == base.model and spec.seed == base.seed
    assert {k: c.name for k, c in spec.components.items()} == {
        **{k: c.name for k, c in base.components.items()}, **changes}
    assert params(spec)["total"] == GPT2_SMALL + delta


def test_every_ablation_file_is_checked():
    assert GPT2_SMALL == 163_009_536
    assert sorted(p.stem for p in ABLATIONS) == sorted(ABLATION_CHANGES)


def test_gqa_and_mqa_share_key_value_heads():
    gqa = explorer.load_spec(SPECS / "ablations" / "gqa.yaml")
    mqa = explorer.load_spec(SPECS / "ablations" / "mqa.yaml")
    assert gqa.components["attention"].params["n_kv_heads"] == 4
    assert mqa.components["attention"].params["n_kv_heads"] == 1
    per_block = params(mqa)["per_block"][0]
    assert per_block["attention"] == gqa_attention(1) == 2 * H * H + 2 * H * D + H


def test_tied_is_total_minus_the_head():
    tied = params(explorer.load_spec(SPECS / "ablations" / "tied.yaml"))
    assert tied["head_tied"] is True
    assert tied["total"] == GPT2_SMALL - V * H == 124_412_160


def test_llama_style_count_is_the_closed_form():
    spec = explorer.load_spec(SPECS / "llama_style.yaml")
    m = spec.model
    h, n, v, a = m.emb_dim, m.n_layers, m.vocab_size, m.n_heads
    d = h // a
    k = spec.components["attention"].params["n_kv_heads"]
    f = llama_hidden(h)
    assert (v >= 50257, f, k, d) == (True, 2048, 4, 64)
    attention = h * a * d + 2 * h * k * d + a * d * h  # q, k, v, out; no biases at all
    ffn = 3 * h * f  # gated: W1, W3 (h -> f) and W2 (f -> h), no biases
    norms = 2 * h  # two RMSNorms per block, a scale each
    expected = v * h + n * (attention + ffn + norms) + h + v * h  # embedding, blocks, final norm, head
    result = params(spec)
    assert result["total"] == expected == 152_711_424
    assert result["by_kind"]["positional"] == 0  # RoPE has no parameters
    assert result["per_block"][0] == {"attention": attention, "ffn": ffn, "norm": norms,
                                      "total": attention + ffn + norms}
    assert result["head_tied"] is False


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2_small.yaml", "llama_style.yaml"])
def test_full_size_builds_with_real_weights(name):
    spec = explorer.load_spec(SPECS / name)
    model = explorer.build_model(spec).eval()
    assert sum(p.numel() for p in model.parameters()) == params(spec)["total"]
    with torch.no_grad():
        logits = model(torch.tensor([[15496, 11, 314, 716]]))  # "Hello, I am"
    assert abs(F.cross_entropy(logits[0, :-1], torch.tensor([11, 314, 716])).item()
               - math.log(V)) < 3
