"""Analyses own their presentation: a third-party analysis shows up in build, in compare's table
and in --plots with no core change; its figures and charts are its own, or generic defaults."""

import json
import struct
import textwrap

import pytest

import explorer
from explorer import Analysis, Chart, hookimpl
from explorer.analysis.comparison import analyses_of, compare
from explorer.registry.components import flat_figures
from explorer.analysis.plots import write_plots
from tests.helpers import run_cli

PLUGIN = textwrap.dedent('''
    from explorer import Analysis, Chart, ExplorerError, hookimpl

    def depth(ctx):
        cfg = ctx.spec.model
        if cfg.n_layers > 4:
            raise ExplorerError(f"probe: {cfg.n_layers} layers is too deep for this probe")
        return {"blocks_x_width": cfg.n_layers * cfg.emb_dim, "label": ctx.spec.name,
                "shape": {"layers": cfg.n_layers, "deeper": {"not": "shown"}},
                "per_layer": list(range(cfg.n_layers))}

    def draw(fig, series):
        ax = fig.subplots()
        ax.bar([label for label, _ in series], [r["blocks_x_width"] for _, r in series])

    @hookimpl
    def explorer_analyses():
        return [Analysis(name="probe", run=depth, default=False, needs_weights=False,
                         charts=(Chart("probe-depth", "Blocks x width", draw),))]
''')
SPEC = "name: {name}\nseed: 1\ntokenizer: bytes\nmodel: {{vocab_size: 256, context_length: 16, " \
       "emb_dim: 16, n_heads: 4, n_layers: {layers}}}\n"


@pytest.fixture
def plugin(tmp_path):
    path = tmp_path / "probe_plugin.py"
    path.write_text(PLUGIN)
    return path


@pytest.fixture
def specs(write_spec):
    return [write_spec(SPEC.format(name=name, layers=layers), name=f"{name}.yaml")
            for name, layers in (("two", 2), ("three", 3), ("deep", 6))]


def test_generic_figures_flatten_scalars_two_levels_and_skip_lists():
    result = {"n": 3, "ok": True, "name": "x", "none": None, "curve": [1, 2],
              "by": {"a": 1.5, "deeper": {"b": 2}, "list": [3]}}
    assert flat_figures(result) == {"n": 3, "ok": True, "name": "x", "none": None, "by.a": 1.5}


def test_third_party_analysis_in_build_compare_and_plots(capsys, plugin, specs, tmp_path):
    code, out, err = run_cli(capsys, "build", specs[0], "-p", plugin, "--only", "probe")
    assert code == 0, err
    assert "== probe ==" in out and "blocks_x_width: 32" in out  # no render: its YAML

    plots = tmp_path / "plots"
    code, out, err = run_cli(capsys, "compare", *specs[:2], "-p", plugin, "--only", "probe,params",
                         "--plots", plots)
    assert code == 0, err
    lines = out.splitlines()
    probe = lines.index("probe")
    # Generic figures: scalars and one nested level; the list and the deeper dict are left out.
    assert [line.split() for line in lines[probe + 1: probe + 4]] == [
        ["blocks_x_width", "32", "48", "+50%"], ["label", "two", "three"],
        ["shape.layers", "2", "3", "+50%"]]
    assert lines[probe + 4] == "params"
    assert sorted(p.name for p in plots.iterdir()) == ["params.png", "probe-depth.png"]
    data = (plots / "probe-depth.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24])[0] > 300


def test_an_analysis_failing_for_one_spec_keeps_the_others(capsys, plugin, specs):
    code, out, err = run_cli(capsys, "compare", *specs, "-p", plugin, "--only", "probe")
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("  blocks_x_width"))
    assert row.split() == ["blocks_x_width", "32", "48", "+50%", "-"]
    assert "deep: probe FAILED: probe: 6 layers is too deep for this probe" in out
    assert "[3/3] deep: done in" in err and "FAILED: probe" in err
    code, out, _ = run_cli(capsys, "compare", *specs, "-p", plugin, "--only", "probe",
                       "--format", "json")
    result = json.loads(out)
    assert code == 1
    assert result["failures"] == [{"spec": "deep", "analysis": "probe",
                                   "message": "probe: 6 layers is too deep for this probe"}]
    assert result["reports"][2]["failures"] == {
        "probe": "probe: 6 layers is too deep for this probe"}
    assert [r["analyses"].get("probe", {}).get("label") for r in result["reports"]] == [
        "two", "three", None]


class Probe:
    """Registered on a fresh manager, with its own figures and a chart drawn by name."""

    @hookimpl
    def explorer_analyses(self):
        return [Analysis(
            name="probe", run=lambda ctx: {"width": ctx.spec.model.emb_dim, "tags": ["a"]},
            needs_weights=False, figures=lambda r: {"width_squared": r["width"] ** 2},
            charts=(Chart("probe", "Width", "probe_charts:draw"),))]


def test_analysis_registered_on_a_fresh_manager(specs, tmp_path, monkeypatch):
    (tmp_path / "probe_charts.py").write_text(
        "def draw(fig, series):\n    fig.subplots().plot([r['width'] for _, r in series])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    manager = explorer.get_plugin_manager(entry_points=False)
    manager.register(Probe(), "probe")
    loaded = [explorer.load_spec(p, plugins=manager) for p in specs[:2]]
    result = compare(loaded, only=["probe"])
    assert [(r["figure"], r["values"]) for r in result["rows"]] == [("probe.width_squared",
                                                                     [256, 256])]
    written, failed = write_plots(result, analyses_of(loaded, result["reports"]), tmp_path / "p")
    assert failed == {} and [p.rsplit("/", 1)[1] for p in written] == ["probe.png"]


class Broken:
    """Figures that are not flat and a chart that raises: reported, the rest still shown."""

    @hookimpl
    def explorer_analyses(self):
        def draw(fig, series):
            raise ValueError("no axes today")

        return [Analysis(name="broken", run=lambda ctx: {"x": 1}, needs_weights=False,
                         figures=lambda r: {"x": [1, 2]}, charts=(Chart("broken", "B", draw),))]


def test_bad_figures_and_charts_are_failures_not_tracebacks(specs, tmp_path):
    manager = explorer.get_plugin_manager(entry_points=False)
    manager.register(Broken(), "broken-plugin")
    loaded = [explorer.load_spec(p, plugins=manager) for p in specs[:2]]
    result = compare(loaded, only=["broken", "params"])
    assert result["rows"][0]["figure"] == "params.total"
    assert result["failures"][0] == {
        "spec": "two", "analysis": "broken",
        "message": "figures of analysis 'broken' (plugin broken-plugin) failed: TypeError: figure "
                   "'x' is a list; figures are numbers, strings or booleans"}
    written, failed = write_plots(result, analyses_of(loaded, result["reports"]), tmp_path)
    assert [p.rsplit("/", 1)[1] for p in written] == ["params.png"]
    assert failed == {"broken.png": "chart 'broken' of analysis 'broken' raised ValueError: no "
                                    "axes today"}


def test_chart_draw_by_name_is_imported_only_when_drawn():
    chart = Chart("x", "X", "no_such_module_anywhere:draw")  # registering imports nothing
    with pytest.raises(ModuleNotFoundError):
        chart.load()
