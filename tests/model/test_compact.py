"""Compact models (explorer.model.stack): shape-only analyses build one block per distinct layer
configuration and multiply, and report exactly what a build of every block reports."""


from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
import torch
from torch import nn

import explorer
import explorer.model.gpt
from tests.helpers import ROOT, TINY_MODEL
from explorer import Component, Param, hookimpl
from explorer.plugins.attention.mha import GroupedQueryAttention
from explorer.model.stack import EMBEDDING, StackPlan, plan_for
from tests.helpers.layouts import COMPONENTS, LAYOUT, MLA

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE_ONLY = ["params", "memory", "flops", "summary"]
SPECS = sorted(str(p) for p in (ROOT / "specs").rglob("*.yaml"))


# -- the plan: which blocks to build, and what each stands for -------------------------------------

@pytest.mark.parametrize("configs, built", [
    ("a" * 96, (0, 1)),                          # GPT-3: the first block, and one after a block
    ("ab" * 6, (0, 1, 2, 3)),                    # local/global: a, b after a, a after b, b again
    ("ddd" + "m" * 24, (0, 1, 3, 4)),            # dense then MoE: d, d after d, m after d, m again
    ("aaan" * 3, (0, 1, 3, 4, 7)),               # NoPE every 4th: ..., a after n, n again
    ("xaxa", (0, 1, 2, 3)),                      # no two pairs alike: every block
    ("a", (0,)),
])
def test_plan_builds_a_block_per_pair_it_must_measure(configs, built):
    plan = plan_for(list(configs))
    assert plan.built == built
    assert plan.is_full == (built == tuple(range(len(configs))))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from("abc"), min_size=1, max_size=40))
@example(configs=list("cabcabb"))  # found by hypothesis: the walk built 8 blocks for 7 layers
def test_plan_measures_each_layer_after_its_real_predecessor(configs):
    plan = plan_for(configs)
    stack = [configs[layer] for layer in plan.built]
    for i, config in enumerate(configs):
        assert stack[plan.counts[i]] == config
        k = plan.measures[i]
        assert stack[k] == config
        assert (stack[k - 1] if k else EMBEDDING) == (configs[i - 1] if i else EMBEDDING)
    assert stack[-1] == configs[-1]  # the final norm and head follow what they follow
    for config in set(configs):  # a repeated configuration is built twice, to check sharing
        assert stack.count(config) >= min(2, configs.count(config))
    assert len(plan.built) <= len(configs) and set(plan.built) <= set(range(len(configs)))


def test_full_plan_is_the_identity():
    plan = StackPlan.full(3)
    assert plan.is_full and plan.counts == plan.measures == plan.built == (0, 1, 2)
    assert [plan.layers_of(k) for k in range(3)] == [[0], [1], [2]]


def test_gpt3_175b_builds_two_blocks_for_ninety_six():
    spec = explorer.load_spec("specs/gpt3_175b.yaml")
    model = explorer.build_model(spec, device="meta", compact=True)
    assert len(model.trf_blocks) == 2
    assert model.stack_plan.counts == (0,) * 96 and model.stack_plan.measures == (0,) + (1,) * 95


# -- the same reports as a build of every block ---------------------------------------------------

def _full_builds(monkeypatch):
    """Every later compact build builds every block, as before compact models existed."""
    monkeypatch.setattr(explorer.model.gpt, "plan_of_spec",
                        lambda spec: StackPlan.full(spec.model.n_layers))


def _shrunk(path):
    """Short sequences (the figures' exactness does not depend on the length) and at most 6
    blocks: copies of one block, a dense first block before MoE ones, and local/global pairs
    all remain; a layout whose entries name later layers keeps its own depth."""
    overrides = ["analyses.memory.seq_len=32", "analyses.flops.seq_len=32",
                 "analyses.summary.depth=5"]
    if explorer.load_spec(path).model.n_layers > 6:
        try:
            return explorer.load_spec(path, overrides=[*overrides, "model.n_layers=6"])
        except explorer.SpecError:
            pass
    return explorer.load_spec(path, overrides=overrides)


def _same_reports(spec, monkeypatch, only=SHAPE_ONLY):
    compact = explorer.analyze(spec, only=only)
    assert compact["failures"] == {}
    with monkeypatch.context() as patch:
        _full_builds(patch)
        full = explorer.analyze(spec, only=only)
    assert compact["analyses"] == full["analyses"]
    return compact["analyses"]


# One spec of each structure in the default run (the rest differ only in sizes or in a component
# these already cover); `-m slow` runs every spec.
STRUCTURES = {"tiny", "gpt2_small", "gpt3_175b", "ablations/local_global", "ablations/parallel",
              "models/deepseek_v2_lite", "models/gemma2_2b", "models/mixtral_8x7b",
              "models/llama3_8b"}


def _one_of_each_structure(paths):
    root = ROOT / "specs"
    return [path if Path(path).relative_to(root).with_suffix("").as_posix() in STRUCTURES
            else pytest.param(path, marks=pytest.mark.slow) for path in paths]


@pytest.mark.parametrize("path", _one_of_each_structure(SPECS))
def test_compact_and_full_builds_report_the_same(path, monkeypatch):
    _same_reports(_shrunk(path), monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("path", SPECS)
def test_compact_and_full_builds_report_the_same_at_full_size(path, monkeypatch):
    _same_reports(explorer.load_spec(path), monkeypatch)


# The layout of tests/analysis/test_layer_analyses.py: a dense first layer, then mixtures of experts,
# windows on odd layers, NoPE on layer 3; and latent attention throughout.
@pytest.mark.parametrize("components, layers, drop_rate", [
    (COMPONENTS, LAYOUT, 0.0),
    (COMPONENTS, LAYOUT, 0.1),
    ({**COMPONENTS, "attention": MLA}, [{"first": 2, "components": {"ffn": "glu"}}], 0.0),
    ({"residual": "post_norm", "attention": {"name": "mha", "impl": "manual"}},
     [{"every": 3, "offset": 2, "components": {"residual": "sandwich"}}], 0.1),
])
def test_layouts_moe_and_latent_attention_report_the_same(write_spec, monkeypatch, components,
                                                          layers, drop_rate):
    spec = explorer.load_spec(write_spec({
        "name": "layout", "seed": 123, "tokenizer": "bytes",
        "model": {**TINY_MODEL, "emb_dim": 16, "n_layers": 10, "drop_rate": drop_rate},
        "components": components, "layers": layers,
        "analyses": {"summary": {"depth": 6}}}))
    model = explorer.build_model(spec, device="meta", compact=True)
    assert len(model.trf_blocks) < 10  # compact indeed
    analyses = _same_reports(spec, monkeypatch)
    assert len(analyses["params"]["per_block"]) == 10


def test_activations_on_meta_and_the_real_model_are_the_same(make_spec, monkeypatch):
    spec = make_spec(model={"n_layers": 6, "drop_rate": 0.1})
    ctx = explorer.AnalysisContext(spec)
    compact = {d: ctx.saved_activations(16, 2, device=d) for d in ("fake", "meta")}
    with monkeypatch.context() as patch:
        _full_builds(patch)
        full = explorer.AnalysisContext(spec)
        assert compact == {d: full.saved_activations(16, 2, device=d) for d in ("fake", "meta")}
        assert compact["fake"] == full.saved_activations(16, 2, device="cpu")


def test_summary_lists_every_block_and_prints_repeats_once(monkeypatch):
    spec = explorer.load_spec("specs/gpt3_175b.yaml")
    result = explorer.analyze(spec, only=["summary"])["analyses"]["summary"]
    blocks = [r for r in result["rows"] if r["depth"] == 2]
    assert [r["name"] for r in blocks] == [f"trf_blocks.{i}" for i in range(96)]
    assert {r["params"] for r in blocks} == {12 * 12288**2 + 13 * 12288}
    assert result["total"] == 174_604_259_328
    text = spec.plugin_manager.registry().analysis("summary").load_render()(result)
    assert "│ ├─0 (PreNormBlock)" in text
    assert "│ └─1-95: 95 x PreNormBlock, each as 0  [1, 8, 12288]  1,812,099,072 each" in text
    assert "│ │ ├─att (MultiHeadAttention)" in text
    assert text.count("(MultiHeadAttention)") == 1


# -- blocks that are not copies of each other: every block is built -----------------------------

class WindowOnEvenLayers(GroupedQueryAttention):
    """Reads ctx.layer: a sliding window of 4 on even layers only."""

    def __init__(self, ctx, **params):
        super().__init__(ctx, **params)
        self.window = 4 if ctx.layer % 2 == 0 else 0


class SharedAcrossLayers(nn.Module):
    """ALBERT-style: every block's feed-forward is one module (its parameters counted once),
    one per spec and kind of tensor built (real, meta, each FakeTensorMode's)."""

    shared = {}

    def __init__(self, ctx):
        super().__init__()
        probe = torch.empty(0)
        key = (id(ctx.spec), probe.device, id(getattr(probe, "fake_mode", None)))
        if key not in self.shared:
            self.shared[key] = nn.Linear(ctx.config.emb_dim, ctx.config.emb_dim)
        self.proj = self.shared[key]

    def forward(self, x):
        return self.proj(x)


class NotCopies:
    @hookimpl
    def explorer_components(self):
        gqa = explorer.get_plugin_manager(entry_points=False).registry().component("attention",
                                                                                   "gqa")
        return [Component(kind="attention", name="even_windows", factory=WindowOnEvenLayers,
                          params=gqa.params),
                Component(kind="ffn", name="shared", factory=SharedAcrossLayers)]


@pytest.mark.parametrize("components", [{"attention": "even_windows"}, {"ffn": "shared"}])
def test_blocks_that_are_not_copies_are_all_built(write_spec, monkeypatch, components):
    manager = explorer.get_plugin_manager(entry_points=False)
    manager.register(NotCopies(), "not-copies")
    spec = explorer.load_spec(write_spec({
        "name": "odd", "seed": 123, "tokenizer": "bytes",
        "model": {**TINY_MODEL, "n_layers": 5}, "components": components}), plugins=manager)
    model = explorer.build_model(spec, device="meta", compact=True)
    assert len(model.trf_blocks) == 5 and model.stack_plan.is_full
    analyses = _same_reports(spec, monkeypatch)
    if "ffn" in components:  # one shared Linear of 16 x 16 + 16, counted once
        assert analyses["params"]["by_kind"]["ffn"] == 16 * 16 + 16
    else:
        assert [l["window"] for l in analyses["memory"]["kv_cache"]["per_layer"]] == [4, 0, 4, 0, 4]
