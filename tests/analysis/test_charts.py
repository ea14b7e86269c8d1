"""The built-in analyses' charts, drawn on a Figure from made-up results: what each panel shows."""

import math
import sys

import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from explorer.analysis.plots import PALETTE, draw, log_floor, to_svg
from explorer.registry.plugin_manager import get_plugin_manager

REGISTRY = get_plugin_manager(entry_points=False).registry()


def chart(analysis):
    (only,) = REGISTRY.analyses[analysis].charts
    return only


def gradflow(per_block, after=None, steps=3):
    result = {"per_block": [{"all": v} for v in per_block]}
    if after is not None:
        result["after_steps"] = {"steps": steps, "per_block": [{"all": v} for v in after]}
    return result


def cie_lab(colour):
    """CIE L*a*b* (D65) of an sRGB colour: distances here are what an eye tells apart (CIE76)."""
    lin = [v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in to_rgb(colour)]
    x = (0.4124 * lin[0] + 0.3576 * lin[1] + 0.1805 * lin[2]) / 0.95047
    y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    z = (0.0193 * lin[0] + 0.1192 * lin[1] + 0.9505 * lin[2]) / 1.08883
    f = [t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in (x, y, z)]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def legend_labels(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_gradflow_shows_initialization_and_after_the_steps():
    """Issue 9 item 14: the chart showed only initialization, where no_shortcut looks healthy."""
    fig = draw(chart("gradflow"), [
        ("pre_norm", gradflow([1e-3, 2e-3, 3e-3], after=[1e-3, 1e-3, 1e-3])),
        ("no_shortcut", gradflow([1e-3, 1e-3, 1e-3], after=[0.0, 0.0, 0.0]))])
    init, after = fig.axes
    assert [init.get_title(), after.get_title()] == ["at initialization", "after 3 AdamW steps"]
    assert init.get_yscale() == after.get_yscale() == "log"
    assert list(init.lines[0].get_ydata()) == [1e-3, 2e-3, 3e-3]
    # All zero after the steps: on the axis floor (a decade below the smallest value), labelled.
    floor = 1e-4
    assert legend_labels(after) == ["pre_norm", "no_shortcut (all zero)"]
    zero = next(line for line in after.lines if line.get_label() == "no_shortcut (all zero)")
    assert list(zero.get_ydata()) == [floor] * 3 and zero.get_marker() == "v"
    assert after.get_ylim()[0] < floor  # the markers are inside the axes, not clipped
    assert fig.get_suptitle().startswith("Gradient flow per block")


def test_gradflow_marks_single_zeros_and_has_one_panel_without_steps():
    fig = draw(chart("gradflow"), [("a", gradflow([1e-2, 0.0, 1e-3]))])
    (ax,) = fig.axes
    line, zeros = ax.lines[0], ax.lines[1]
    assert math.isnan(line.get_ydata()[1])  # a gap in the line, not a fake value
    assert list(zeros.get_xdata()) == [1] and list(zeros.get_ydata()) == [1e-4]
    assert legend_labels(ax) == ["a"]
    assert log_floor([0.0, 5e-3, float("nan")]) == pytest.approx(5e-4)


def params(**by_kind):
    kinds = {k: 0 for k in ("embedding", "positional", "attention", "ffn", "norm", "output_head")}
    return {"by_kind": {**kinds, **by_kind}}


def test_params_shows_per_kind_differences_from_the_first_spec():
    """A 0.01% difference is invisible in stacked totals: the second panel shows it by kind."""
    base = params(embedding=38_597_376, attention=28_320_768, ffn=56_669_184, norm=38_400)
    rms = params(embedding=38_597_376, attention=28_320_768, ffn=56_669_184, norm=19_200)
    tied = params(embedding=38_597_376, attention=28_320_768, ffn=56_669_184, norm=38_400,
                  output_head=-38_597_376)
    fig = draw(chart("params"), [("gpt2", base), ("rmsnorm", rms), ("tied", tied)])
    totals, diffs = fig.axes
    assert diffs.get_title() == "difference from gpt2 by kind"
    assert diffs.get_yscale() == "symlog"
    heights = [[bar.get_height() for bar in bars] for bars in diffs.containers]
    assert heights == [[0, 0, 0, 0, -19_200, 0], [0, 0, 0, 0, 0, -38_597_376]]
    assert [t.get_text() for t in diffs.texts if t.get_text()] == ["-19.2k", "-38.6M"]
    assert legend_labels(diffs) == ["rmsnorm", "tied"]
    # The stacked panel: one colour per kind, all distinct (Okabe-Ito).
    colours = [to_rgb(bars[0].get_facecolor()) for bars in totals.containers]
    assert len(colours) == 6 and all(to_rgb(c) in map(to_rgb, PALETTE) for c in colours)
    lab = [cie_lab(c) for c in colours]
    nearest = min(math.dist(a, b) for i, a in enumerate(lab) for b in lab[i + 1:])
    assert nearest > 25  # the old embedding #4C72B0 and output_head #8172B3 were 16 apart


def test_params_with_one_spec_or_no_difference():
    (ax,) = draw(chart("params"), [("only", params(ffn=10))]).axes
    assert ax.get_title() == "by component kind"
    totals, diffs = draw(chart("params"), [("a", params(ffn=10)), ("b", params(ffn=10))]).axes
    assert [t.get_text() for t in diffs.texts] == ["no differences"]


def curve(val, baseline):
    return {"curve": [{"step": 0, "train_loss": 5.5, "val_loss": 5.6},
                      {"step": 4, "train_loss": val - 0.1, "val_loss": val}],
            "unigram_baseline": baseline}


def test_loss_draws_each_distinct_baseline_once():
    """Two identical baselines overlapped as two lines; now one, saying which specs share it."""
    fig = draw(chart("train"), [("gelu", curve(3.0, 3.3412)), ("relu", curve(3.1, 3.3412)),
                                ("bytes2", curve(3.2, 4.0))])
    (ax,) = fig.axes
    baselines = [line for line in ax.lines if "baseline" in line.get_label()]
    assert [line.get_label() for line in baselines] == [
        "unigram baseline 3.341 (gelu, relu)", "unigram baseline 4 (bytes2)"]
    assert [line.get_ydata()[0] for line in baselines] == [3.3412, 4.0]
    (ax,) = draw(chart("train"), [("a", curve(3.0, 3.3)), ("b", curve(3.1, 3.3))]).axes
    assert [line.get_label() for line in ax.lines if "baseline" in line.get_label()] == [
        "unigram baseline 3.3 (all specs)"]


def test_charts_render_to_png_and_svg_without_pyplot(tmp_path):
    from explorer.analysis.plots import save

    fig = draw(chart("gradflow"), [("a", gradflow([1e-3, 2e-3], after=[1e-3, 0.0]))])
    assert isinstance(fig, Figure)
    save(fig, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = to_svg(fig)
    assert svg.startswith("<?xml") and "<svg" in svg
    assert "matplotlib.pyplot" not in sys.modules  # the object API: no global figure state
