"""``--only``: names looked up in each spec's own registry (its ``plugins:`` loaded), unknown or
empty ones refused in one line before anything runs."""

import json

import pytest

from tests.helpers import TINY_MODEL, TINY_TOKENIZER, run_cli

# An analysis a spec brings with it (``plugins: [width.py]``): not installed, not on -p.
WIDTH_PLUGIN = '''
from explorer import Analysis, Param, hookimpl


def run(ctx, times):
    return {"width_times": ctx.spec.model.emb_dim * times}


@hookimpl
def explorer_analyses():
    return [Analysis(name="width", run=run, default=False, description="emb_dim times a number",
                     params=(Param("times", int, 2, "the factor"),))]
'''


@pytest.fixture
def specs(tmp_path):
    """Two tiny specs in one folder: ``with_plugin.yaml`` lists width.py in ``plugins:``,
    ``plain.yaml`` does not."""
    (tmp_path / "width.py").write_text(WIDTH_PLUGIN)
    doc = {"seed": 1, "tokenizer": TINY_TOKENIZER, "model": TINY_MODEL}
    with_plugin = tmp_path / "with_plugin.yaml"
    with_plugin.write_text(json.dumps({"name": "a", **doc, "plugins": ["width.py"],
                                       "analyses": {"width": {"times": 3}}}))
    plain = tmp_path / "plain.yaml"
    plain.write_text(json.dumps({"name": "b", **doc}))
    return with_plugin, plain


def test_build_only_knows_an_analysis_the_specs_own_plugins_register(specs, capsys):
    with_plugin, _ = specs
    code, out, err = run_cli(capsys, "build", with_plugin, "--only", "width", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert list(report["analyses"]) == ["width"]
    assert report["analyses"]["width"] == {"width_times": 16 * 3}  # the spec's analyses: times 3
    code, out, err = run_cli(capsys, "build", with_plugin, "--only", "width",
                             "--set", "analyses.width.times=5")
    assert code == 0, err
    assert "== width ==\nwidth_times: 80" in out


def test_compare_only_knows_it_in_each_spec_with_its_own_plugins(specs, capsys):
    with_plugin, _ = specs
    code, out, err = run_cli(capsys, "compare", with_plugin, with_plugin, "--only", "width",
                             "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert [(r["figure"], r["values"]) for r in result["rows"]] == [("width.width_times", [48, 48])]


def test_compare_refuses_a_name_one_spec_lacks_naming_that_spec(specs, capsys):
    # Each spec has its own plugin manager: plain.yaml never sees with_plugin.yaml's plugin.
    with_plugin, plain = specs
    code, out, err = run_cli(capsys, "compare", with_plugin, plain, "--only", "width")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"Error: {plain}: --only: unknown analysis 'width'; registered: coordcheck, flops, "
        "gradflow, memory, params, samples, summary, train"]


def test_build_refuses_an_unknown_name_in_one_line(specs, capsys):
    with_plugin, _ = specs
    code, out, err = run_cli(capsys, "build", with_plugin, "--only", "widht")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "Error: --only: unknown analysis 'widht'; did you mean 'width'? registered: "
        "coordcheck, flops, gradflow, memory, params, samples, summary, train, width"]


@pytest.mark.parametrize("command", ["build", "compare"])
@pytest.mark.parametrize("only", ["", " ", ",", " , ,"])
def test_only_that_names_nothing_is_refused(specs, capsys, command, only):
    # It used to read as "no --only" and run every default analysis.
    _, plain = specs
    paths = [plain] if command == "build" else [plain, plain]
    code, out, err = run_cli(capsys, command, *paths, "--only", only)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"Error: --only {only!r}: names no analysis; give one or more, comma-separated, e.g. "
        "--only params,memory (explorer plugins --kind analysis lists them)"]
