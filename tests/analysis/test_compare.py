"""explorer compare: spec differences, figures and deltas, --figures, failures, progress."""

import io
import json
import struct

import pytest

import explorer
from explorer.analysis.compare_table import format_delta, to_markdown, to_text
from explorer.analysis.comparison import compare, spec_differences
from tests.helpers import ROOT, run_cli

MODEL = ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_heads: 4, n_layers: 3}\n"
         "seed: 5\n")
V, H = 50257, 16
BLOCK = (4 * H * H + H) + (8 * H * H + 5 * H) + 2 * 2 * H  # attention, MLP, two LayerNorms
BASE_TOTAL = V * H + 32 * H + 3 * BLOCK + 2 * H + V * H  # 1,618,464
TIED_TOTAL = BASE_TOTAL - V * H  # 814,352: -49.7%
# Quick default analyses on specs/tiny.yaml-based specs: 2 blocks, short sequences.
QUICK = ["--set", "model.n_layers=2", "--set", "analyses.memory.seq_len=16",
         "--set", "analyses.flops.seq_len=16", "--set", "analyses.gradflow.steps=1"]


@pytest.fixture
def pair(write_spec):
    base = write_spec("name: base\n" + MODEL, name="base.yaml")
    tied = write_spec("extends: base.yaml\nname: tied\ncomponents: {weight_tying: tied}\nseed: 9\n",
                      name="tied.yaml")
    return base, tied


@pytest.fixture
def ablations(write_spec):
    """Three specs/tiny.yaml ablations with names too long for three columns in 100."""
    tiny = "extends: " + str(ROOT / "specs/tiny.yaml") + "\n"
    return [write_spec(tiny + f"name: {name}\n" + extra, name=f"{name}.yaml") for name, extra in (
        ("tiny-baseline-with-long-name", ""),
        ("tiny-no-shortcut-ablation", "components: {residual: none}\n"),
        ("tiny-rmsnorm-ablation", "components: {norm: rmsnorm}\n"))]


def test_differences_are_computed_against_the_first_spec(pair):
    specs = [explorer.load_spec(p) for p in pair]
    result = compare(specs, only=["params"])
    rows = {r["figure"]: r for r in result["rows"]}
    total = rows["params.total"]
    assert total["values"][0] - total["values"][1] == V * H  # the head is gone
    assert total["delta"] == [0, -V * H]
    assert total["delta_pct"][1] == pytest.approx(-100.0 * V * H / total["values"][0])
    assert total["analysis"] == "params"
    assert rows["params.by_kind.output_head"]["values"] == [V * H, 0]
    assert rows["params.head_tied"]["values"] == [False, True]
    assert rows["params.head_tied"]["delta"] == [None, None]


def test_deltas_are_exact_and_rounded_only_for_display():
    """Issue 9 item 9: tiny 1.2964 MB vs tiny-rmsnorm 1.2932 MB was shown as 1.3 vs 1.29, -0.8%."""
    quick = ["analyses.memory.seq_len=8"]
    specs = [explorer.load_spec("specs/tiny.yaml", overrides=quick),
             explorer.load_spec("specs/tiny.yaml", overrides=[*quick, "components.norm=rmsnorm"])]
    result = compare(specs, only=["memory"])
    row = next(r for r in result["rows"] if r["figure"] == "memory.weights_mb.fp32")
    n0, n1 = 339_840, 339_840 - 64 * (2 * 6 + 1)  # RMSNorm has no shift: 64 fewer per norm
    assert row["values"] == [4 * n0 / 2**20, 4 * n1 / 2**20]  # unrounded MB
    assert row["delta_pct"][1] == pytest.approx(100 * (n1 - n0) / n0)  # -0.245%, not -0.77%
    assert round(row["values"][0], 2) == 1.30 and round(row["values"][1], 2) == 1.29
    line = next(line for line in to_text(result).splitlines() if "weights_mb.fp32" in line)
    assert line.split()[1:] == ["1.29639", "1.29321", "-0.24%"]


@pytest.mark.parametrize("diff, pct, shown", [
    (0, 0.0, ""), (None, None, ""), (-5, -0.403, "-0.4%"), (3, 12.34, "+12%"),
    (1, 1234.5, "+1,234%"), (-1, -0.0004, "-<0.001%"), (7, None, "+7"), (2.5, 0.0512, "+0.051%")])
def test_compact_delta(diff, pct, shown):
    assert format_delta(diff, pct) == shown


def test_spec_differences_and_one_seed_for_all(pair):
    specs = [explorer.load_spec(p) for p in pair]
    result = compare(specs, only=["params"])
    # The seed is the first spec's for every spec, so it is not a difference.
    assert result["seed"] == 5
    assert result["spec_differences"] == {"components.weight_tying.name": ["none", "tied"]}
    assert [r["spec"]["seed"] for r in result["reports"]] == [5, 5]


def test_same_seed_same_sample_means_identical_figures_for_identical_models(pair):
    spec = explorer.load_spec(pair[0])
    result = compare([spec, spec], only=["gradflow", "samples"])
    for row in result["rows"]:
        assert row["values"][0] == row["values"][1], row["figure"]
    assert result["reports"][0]["analyses"] == result["reports"][1]["analyses"]
    assert result["labels"] == ["A base", "B base"]  # repeated names get letters


def test_spec_differences_of_nested_dicts():
    a = {"name": "a", "model": {"n_layers": 2, "dropout": {"attention": 0.1}}}
    b = {"name": "b", "model": {"n_layers": 3, "dropout": {"attention": 0.1}}}
    assert spec_differences([a, b]) == {"model.n_layers": [2, 3]}


def test_renderers(pair):
    specs = [explorer.load_spec(p) for p in pair]
    result = compare(specs, only=["params"])
    lines = to_text(result).splitlines()
    assert lines[:3] == ["comparing 2 specs (seed 5)", f"  base  {pair[0]}", f"  tied  {pair[1]}"]
    assert lines[4].split() == ["spec", "differences", "base", "tied"]
    assert lines[5].split() == ["components.weight_tying.name", "none", "tied"]
    assert "params" in lines  # the analysis heads its rows
    total = next(line for line in lines if line.startswith("  total "))
    assert total.split() == ["total", f"{BASE_TOTAL:,}", f"{TIED_TOTAL:,}", "-50%"]
    md = to_markdown(result)
    assert "| components.weight_tying.name | none | tied |" in md
    assert "| params.head_tied | no | yes |" in md
    assert f"| params.total | {BASE_TOTAL:,} | {TIED_TOTAL:,} (-50%) |" in md


def test_three_specs_fit_100_columns(capsys, ablations, monkeypatch):
    monkeypatch.chdir(ablations[0].parent)  # the legend shows the paths as given
    ablations = [p.name for p in ablations]
    code, out, err = run_cli(capsys, "compare", *ablations, *QUICK)
    assert code == 0, err
    lines = out.splitlines()
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    # The names do not fit three columns: letters, with a legend that names each spec and file.
    assert lines[1].split() == ["A", "tiny-baseline-with-long-name", str(ablations[0])]
    header = next(line for line in lines if line.startswith("figure"))
    assert header.split() == ["figure", "A", "B", "C"]
    for analysis in ("params", "memory", "gradflow", "samples", "flops"):
        assert analysis in lines
    assert "summary" not in lines  # its figures are {}: the tree is not a figure
    # One line per spec on stderr as each finishes, with its first figures.
    done = [line for line in err.splitlines() if ": done in " in line]
    assert [line.split(":")[0] for line in done] == [
        "[1/3] tiny-baseline-with-long-name", "[2/3] tiny-no-shortcut-ablation",
        "[3/3] tiny-rmsnorm-ablation"]
    assert "params.total 140,672" in done[0]


def test_long_spec_differences_also_switch_to_letters():
    names = ["gpt2-small-baseline-long", "gpt2-small-no-shortcut-long", "gpt2-small-rmsnorm-long"]
    result = {"specs": names, "sources": ["a.yaml", "b.yaml", "c.yaml"], "seed": 1, "not_run": [],
              "spec_differences": {"components.norm.name": ["layernorm", "layernorm", "rmsnorm"]},
              "rows": [{"figure": "params.total", "analysis": "params", "values": [10, 10, 9],
                        "delta": [0, 0, -1], "delta_pct": [0.0, 0.0, -10.0]}], "failures": []}
    lines = to_text(result).splitlines()
    assert max(map(len, lines)) <= 100
    assert lines[5].split() == ["spec", "differences", "A", "B", "C"]
    assert lines[-1].split() == ["total", "10", "10", "9", "-10%"]
    result["spec_differences"] = {}  # the figures alone fit: the names head the columns
    assert to_text(result).splitlines()[-3].split() == ["figure", *names]


def test_figures_option_picks_rows_json_keeps_all(capsys, pair):
    code, out, err = run_cli(capsys, "compare", *pair, "--only", "params,flops", "--figures",
                         "params.by_kind.*,flops.forward_per_token", "--figures", "params.total")
    assert code == 0, err
    figures = [line.split()[0] for line in out.split("\nfigure", 1)[1].splitlines()[1:]]
    assert figures == ["params", "total", "by_kind.embedding", "by_kind.positional",
                       "by_kind.attention", "by_kind.ffn", "by_kind.norm", "by_kind.output_head",
                       "flops", "forward_per_token"]
    # A name without wildcards picks the figures under it; a pattern that picks none is named.
    code, out, err = run_cli(capsys, "compare", *pair, "--only", "params", "--figures",
                         "params.by_kind", "--figures", "nope*", "--format", "markdown")
    assert code == 0
    assert [line.split(" | ")[0] for line in out.splitlines() if line.startswith("| params")] == [
        f"| params.by_kind.{k}" for k in ("embedding", "positional", "attention", "ffn", "norm",
                                          "output_head")]
    assert "warning: --figures 'nope*' matches no figure" in err
    code, out, _ = run_cli(capsys, "compare", *pair, "--only", "params", "--figures", "params.total",
                       "--format", "json")
    # total, trainable, active (per token), with_tied_head, head_tied and the 6 kinds
    assert len(json.loads(out)["rows"]) == 11


def test_figures_in_the_python_api(pair):
    specs = [explorer.load_spec(p) for p in pair]
    result = explorer.compare(specs, only=["params"], figures="params.by_kind.*")
    assert [r["figure"] for r in result["rows"]][:2] == ["params.by_kind.embedding",
                                                         "params.by_kind.positional"]
    assert len(result["rows"]) == 6


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_cli_json_and_plots(capsys, pair, tmp_path):
    plots = tmp_path / "plots"
    code, out, err = run_cli(capsys, "compare", *pair, "--only", "params,gradflow",
                         "--format", "json", "--plots", plots)
    assert code == 0, err
    result = json.loads(out)
    assert result["specs"] == ["base", "tied"]
    assert sorted(p.rsplit("/", 1)[1] for p in result["plots"]) == ["gradflow.png", "params.png"]
    for name in ("gradflow.png", "params.png"):
        width, height = _png_size(plots / name)
        assert width > 300 and height > 200
    assert not list(plots.glob(".*"))  # no temporary files left behind
    assert err == ""  # quiet: JSON mode, and not a terminal


def test_cli_markdown(capsys, pair):
    code, out, _ = run_cli(capsys, "compare", *pair, "--only", "params", "--format", "markdown")
    assert code == 0
    assert out.startswith("Comparing `base`, `tied` (seed 5).")


def test_cli_unknown_analysis_fails_before_building(capsys, pair):
    code, _, err = run_cli(capsys, "compare", *pair, "--only", "nope")
    assert code == 2 and "unknown analysis 'nope'" in err


def test_a_spec_that_fails_before_its_model_is_built_keeps_the_others(capsys, pair, monkeypatch):
    """Issue 9 item 1: a refusal for one spec is recorded for it; the rest still run."""
    import explorer.analysis.comparison

    real = explorer.analysis.comparison.analyze

    def analyze(spec, **kwargs):
        if spec.name == "tied":
            raise explorer.ResourceError("train needs 9 GiB but 4 GiB is available")
        return real(spec, **kwargs)

    monkeypatch.setattr(explorer.analysis.comparison, "analyze", analyze)
    code, out, err = run_cli(capsys, "compare", *pair, pair[0], "--only", "params")
    assert code == 1
    total = next(line for line in out.splitlines() if line.startswith("  total"))
    assert total.split() == ["total", f"{BASE_TOTAL:,}", "-", f"{BASE_TOTAL:,}"]
    assert "tied: FAILED: train needs 9 GiB but 4 GiB is available" in out
    assert "[2/3] tied: FAILED: train needs 9 GiB" in err
    assert "error: tied: train needs 9 GiB but 4 GiB is available" in err
    code, out, _ = run_cli(capsys, "compare", *pair, "--only", "params", "--format", "json")
    result = json.loads(out)
    assert code == 1
    assert result["failures"] == [{"spec": "tied", "analysis": None,
                                   "message": "train needs 9 GiB but 4 GiB is available"}]
    assert result["reports"][1]["error"] == "train needs 9 GiB but 4 GiB is available"
    assert result["rows"][0]["values"] == [BASE_TOTAL, None]


def test_ctrl_c_prints_the_specs_that_finished(capsys, pair, monkeypatch):
    import explorer.analysis.comparison

    real = explorer.analysis.comparison.analyze

    def analyze(spec, **kwargs):
        if spec.name == "tied":
            raise KeyboardInterrupt
        return real(spec, **kwargs)

    monkeypatch.setattr(explorer.analysis.comparison, "analyze", analyze)
    code, out, err = run_cli(capsys, "compare", *pair, "--only", "params")
    assert code == 130
    assert "  not run (interrupted): tied" in out
    assert next(line for line in out.splitlines() if line.startswith("  total")).split() == [
        "total", f"{BASE_TOTAL:,}"]
    assert "Interrupted: 1 of 2 specs finished." in err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_only(monkeypatch, pair):
    from explorer.analysis.progress import run_showing_progress

    specs = [explorer.load_spec(p) for p in pair]
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    reports = list(run_showing_progress(specs, [2, 2], ["params", "flops"]))
    assert [sorted(r["analyses"]) for r in reports] == [["flops", "params"]] * 2
    shown = terminal.getvalue()
    assert "[1/2] base  [####" in shown and "2/2  flops" in shown  # click's bar, per spec
    assert "[2/2] tied: done in" in shown
    quiet = io.StringIO()  # not a terminal: the lines only, no bar
    monkeypatch.setattr("sys.stderr", quiet)
    list(run_showing_progress(specs, [1, 1], ["params"]))
    assert [line.split(":")[0] for line in quiet.getvalue().splitlines()] == ["[1/2] base",
                                                                             "[2/2] tied"]


def test_training_loss_chart(capsys, tmp_path):
    plots = tmp_path / "plots"
    code, out, err = run_cli(capsys, "compare", "specs/tiny.yaml", "specs/tiny.yaml", "--set",
                         "components.activation=relu", "--only", "train", "--set",
                         "analyses.train.steps=4", "--set", "analyses.train.eval_every=2",
                         "--set", "analyses.train.eval_tokens=2048", "--plots", plots)
    assert code == 0, err
    assert "final_val_loss" in out
    width, height = _png_size(plots / "loss.png")
    assert width > 300 and height > 200


def test_compare_is_part_of_the_python_api(pair):
    import explorer.analysis.comparison  # noqa: F401  (importing the module must not shadow the function)

    result = explorer.compare([explorer.load_spec(p) for p in pair], only=["params"])
    assert result["specs"] == ["base", "tied"]
