"""What a third-party analysis can do (issue 19, item 14): read the model ``train`` trained
(``ctx.trained_model()``), say that it does not apply (``explorer.NotApplicable``) and be left
out of the reports, and find every public part of its ``ctx`` in docs/plugins.md."""

import json
import re

import pytest
import torch

import explorer
from explorer.analysis.runner import AnalysisContext
from explorer.training.settings import TrainConfig
from tests.helpers import ROOT, TINY_MODEL, TINY_TOKENIZER, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

# A third-party plugin, loaded from a spec's plugins: list. final_scale reads the final norm's
# scale of the trained model; experts applies only to specs with a mixture of experts.
PLUGIN = '''
import explorer
from explorer import Analysis, hookimpl


def final_scale(ctx):
    trained = ctx.trained_model()
    if trained is None:
        raise explorer.NotApplicable("no trained model: run train before it "
                                     "(--only train,final_scale)")
    return {"initial": ctx.model().final_norm.scale.tolist(),
            "trained": trained.final_norm.scale.tolist(),
            "same_object": trained is ctx.model()}


def experts(ctx):
    if ctx.spec.components["ffn"].name != "moe":
        raise explorer.NotApplicable("no mixture-of-experts layer")
    return {"n_experts": ctx.spec.components["ffn"].params["n_experts"]}


@hookimpl
def explorer_analyses():
    return [Analysis(name="final_scale", run=final_scale, default=False),
            Analysis(name="experts", run=experts, needs_weights=False)]
'''
# A short, cheap training run: 3 steps of 2 x 16 tokens, evaluated on 256 tokens.
TRAIN = {"steps": 3, "batch_size": 2, "seq_len": 16, "eval_tokens": 256, "lr": 0.01}


@pytest.fixture
def spec_file(tmp_path):
    (tmp_path / "scale_plugin.py").write_text(PLUGIN)

    def write(name="dense", **components):
        path = tmp_path / f"{name}.yaml"
        path.write_text(json.dumps({
            "name": name, "seed": 7, "tokenizer": TINY_TOKENIZER, "model": TINY_MODEL,
            "plugins": ["scale_plugin.py"], "components": components,
            "analyses": {"train": TRAIN}}))
        return path
    return write


def test_an_analysis_after_train_reads_the_trained_model(spec_file):
    spec = explorer.load_spec(spec_file())
    report = explorer.analyze(spec, only=["train", "final_scale"])
    assert not report["failures"] and report["skipped"] == {}
    scale = report["analyses"]["final_scale"]
    assert scale["initial"] == [1.0] * 16  # LayerNorm's scale starts at ones (ctx.model())
    assert scale["trained"] != scale["initial"] and not scale["same_object"]
    # The reference: the same spec's seeded model trained by the training loop itself.
    reference = explorer.build_model(spec)
    explorer.train(reference, spec, TrainConfig(**TRAIN))
    assert scale["trained"] == reference.final_norm.scale.tolist()
    assert report["analyses"]["train"]["steps"] == 3


def test_trained_model_is_none_until_an_analysis_keeps_one(spec_file):
    ctx = AnalysisContext(explorer.load_spec(spec_file()))
    assert ctx.trained_model() is None
    model = torch.nn.Linear(2, 2)
    ctx.keep_trained(model)
    assert ctx.trained_model() is model


def test_not_applicable_is_left_out_of_the_text_and_json_reports(spec_file, capsys):
    dense = spec_file()
    # final_scale without train before it, and experts on a dense model: neither applies.
    code, out, err = run_cli(capsys, "build", dense, "--only", "params,final_scale,experts")
    assert code == 0, err
    assert "== params ==" in out
    assert "final_scale" not in out and "experts" not in out and "n/a" not in out
    assert err.splitlines() == [
        "note: final_scale: not applicable: no trained model: run train before it "
        "(--only train,final_scale)",
        "note: experts: not applicable: no mixture-of-experts layer"]
    code, out, err = run_cli(capsys, "build", dense, "--only", "params,final_scale,experts",
                             "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert list(report["analyses"]) == ["params"] and report["failures"] == {}
    assert report["skipped"] == {
        "final_scale": "no trained model: run train before it (--only train,final_scale)",
        "experts": "no mixture-of-experts layer"}


def test_a_default_analysis_that_does_not_apply_leaves_no_row_in_compare(spec_file, capsys):
    dense, moe = spec_file(), spec_file("moe", ffn={"name": "moe", "n_experts": 4})
    # experts is a default analysis (Analysis.default is True unless the plugin says otherwise).
    registry = explorer.load_spec(dense).plugin_manager.registry()
    assert registry.analyses["experts"].default
    code, out, err = run_cli(capsys, "compare", dense, moe, "--only", "params,experts",
                             "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert [r["values"] for r in result["rows"] if r["analysis"] == "experts"] == [[None, 4]]
    assert result["failures"] == []
    assert [r["skipped"] for r in result["reports"]] == [
        {"experts": "no mixture-of-experts layer"}, {}]
    code, out, err = run_cli(capsys, "compare", dense, dense, "--only", "params,experts")
    assert code == 0, err
    assert "experts" not in out and "FAILED" not in out


def public_parts_of_the_context():
    ctx = AnalysisContext(explorer.load_spec(ROOT / "specs" / "tiny.yaml"))
    return sorted({n for n in [*dir(AnalysisContext), *vars(ctx)] if not n.startswith("_")})


def test_every_public_part_of_the_context_is_documented_for_plugin_authors():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    section = docs[docs.index("## Writing an analysis"):]
    section = section[:section.index("\n## ", 3)]
    documented = set(re.findall(r"`ctx\.(\w+)", section))
    assert documented == set(public_parts_of_the_context())
