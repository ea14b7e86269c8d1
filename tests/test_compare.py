"""explorer compare: spec differences, the table of figures and deltas, plots, progress."""

import json
import struct

import pytest

import explorer
from explorer.cli import main
from explorer.comparison import compare, spec_differences, to_markdown, to_text

MODEL = ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_heads: 4, n_layers: 3}\n"
         "seed: 5\n")


@pytest.fixture
def pair(write_spec):
    base = write_spec("name: base\n" + MODEL, name="base.yaml")
    tied = write_spec("extends: base.yaml\nname: tied\ncomponents: {weight_tying: tied}\nseed: 9\n",
                      name="tied.yaml")
    return base, tied


def run(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_differences_are_computed_against_the_first_spec(pair):
    specs = [explorer.load_spec(p) for p in pair]
    result = compare(specs, only=["params"])
    rows = {r["figure"]: r for r in result["rows"]}
    V, H = 50257, 16
    total = rows["params.total"]
    assert total["values"][0] - total["values"][1] == V * H  # the head is gone
    assert total["delta"] == [0, -V * H]
    assert total["delta_pct"][1] == pytest.approx(-100.0 * V * H / total["values"][0])
    assert rows["params.by_kind.output_head"]["values"] == [V * H, 0]
    assert rows["params.head_tied"]["values"] == [False, True]
    assert rows["params.head_tied"]["delta"] == [None, None]


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


def test_spec_differences_of_nested_dicts():
    a = {"name": "a", "model": {"n_layers": 2, "dropout": {"attention": 0.1}}}
    b = {"name": "b", "model": {"n_layers": 3, "dropout": {"attention": 0.1}}}
    assert spec_differences([a, b]) == {"model.n_layers": [2, 3]}


def test_renderers(pair):
    specs = [explorer.load_spec(p) for p in pair]
    result = compare(specs, only=["params"])
    text = to_text(result)
    assert "components.weight_tying.name  none  |  tied" in text
    assert f"-{50257 * 16:,} (" in text
    md = to_markdown(result)
    assert "| components.weight_tying.name | none | tied |" in md
    assert "| params.head_tied | no | yes |  |" in md


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_cli_json_and_plots(capsys, pair, tmp_path):
    plots = tmp_path / "plots"
    code, out, err = run(capsys, "compare", *map(str, pair), "--only", "params,gradflow",
                         "--format", "json", "--plots", str(plots))
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
    code, out, _ = run(capsys, "compare", *map(str, pair), "--only", "params", "--format", "markdown")
    assert code == 0
    assert out.startswith("Comparing `base`, `tied` (seed 5).")


def test_cli_unknown_analysis_fails_before_building(capsys, pair):
    code, _, err = run(capsys, "compare", *map(str, pair), "--only", "nope")
    assert code == 2 and "unknown analysis 'nope'" in err


def test_progress_bar_on_a_terminal(capsys):
    from explorer.cli import _Progress

    bar = _Progress(["gpt2-small"], 2, enabled=True)
    bar(0, "params")
    bar(0, "memory")
    err = capsys.readouterr().err
    assert "gpt2-small" in err and "[##########..........] 1/2 params" in err
    assert "[####################] 2/2 memory" in err and err.endswith("\n")
    quiet = _Progress(["x"], 1, enabled=False)
    quiet(0, "params")
    assert capsys.readouterr().err == ""


def test_training_loss_chart(capsys, tmp_path):
    plots = tmp_path / "plots"
    code, out, err = run(capsys, "compare", "specs/tiny.yaml", "specs/tiny.yaml", "--set",
                         "components.activation=relu", "--only", "train", "--set",
                         "analyses.train.steps=4", "--set", "analyses.train.eval_every=2",
                         "--set", "analyses.train.eval_tokens=2048", "--plots", str(plots))
    assert code == 0, err
    assert "train.final_val_loss" in out
    width, height = _png_size(plots / "loss.png")
    assert width > 300 and height > 200


def test_compare_is_part_of_the_python_api(pair):
    import explorer.comparison  # noqa: F401  (importing the module must not shadow the function)

    result = explorer.compare([explorer.load_spec(p) for p in pair], only=["params"])
    assert result["specs"] == ["base", "tied"]
