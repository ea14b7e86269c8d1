"""The built-in analyses' charts and the sweep's, drawn on a Figure from made-up results: what
each panel shows, and that they stay legible with many specs (every series its own look, the
legend off the data, sane proportions, no text too small for a phone)."""

import math
import sys

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.text import Text

from explorer.analysis.plots import draw, log_floor, to_svg
from explorer.registry.plugin_manager import get_plugin_manager
from explorer.sweep.plots import cost_figure, curves_figure

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


def contrast_on_white(colour):
    """WCAG 2 contrast ratio of ``colour`` against white (1: invisible, 21: black)."""
    lin = [v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in to_rgb(colour)]
    return 1.05 / (0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2] + 0.05)


def legend_labels(fig):
    (legend,) = fig.legends  # one legend for the figure, below the panels
    return [t.get_text() for t in legend.get_texts()]


def looks(fig):
    """How each legend entry is drawn: (colour, line style, marker) of a line, (colour,) of a
    patch."""
    (legend,) = fig.legends
    out = []
    for handle in legend.legend_handles:
        if hasattr(handle, "get_linestyle") and hasattr(handle, "get_marker"):
            out.append((to_rgb(handle.get_color()), handle.get_linestyle(), handle.get_marker()))
        else:
            out.append((to_rgb(handle.get_facecolor()),))
    return out


def rendered(fig):
    if fig.canvas is None or not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    return renderer


def assert_legible(fig):
    """The legend covers no panel, the figure is neither a strip nor a column, and no text is
    under 10 pt (a phone shows a 6-inch chart at about 0.6 of its size: 8 px)."""
    renderer = rendered(fig)
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), ax.get_title()
    tight = fig.get_tightbbox(renderer)
    assert 0.5 <= tight.width / tight.height <= 3, (tight.width, tight.height)
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
    assert min(sizes) >= 10
    for ax in fig.axes:  # tick labels side by side, never on top of each other
        for axis in (ax.xaxis, ax.yaxis):
            ticks = [t for t in axis.get_ticklabels(which="both")
                     if t.get_visible() and t.get_text()]
            boxes = [t.get_window_extent(renderer) for t in ticks]
            for i, a in enumerate(boxes):
                for b, text in zip(boxes[i + 1:], ticks[i + 1:]):
                    assert not a.overlaps(b), (ticks[i].get_text(), text.get_text())


def spec_names(n):
    return [f"gpt2-small-ablation-{i}" for i in range(n)]

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
    assert legend_labels(fig) == ["pre_norm", "no_shortcut", "no_shortcut (all zero)"]
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
    assert legend_labels(fig) == ["a"]
    assert log_floor([0.0, 5e-3, float("nan")]) == pytest.approx(5e-4)


@pytest.mark.parametrize("n", [2, 16])
def test_line_charts_give_every_spec_its_own_look_with_the_legend_off_the_data(n):
    """Issue 19 item 13: from the 9th spec on the colours repeated (gpt2-small and post-norm the
    same blue), and the legend sat on the curves."""
    names = spec_names(n)
    charts = {
        "gradflow": [(name, gradflow([1e-3 * (i + 1)] * 12, after=[2e-3] * 12))
                     for i, name in enumerate(names)],
        "train": [(name, curve(3.0 + i / 100, 3.3)) for i, name in enumerate(names)]}
    for analysis, series in charts.items():
        fig = draw(chart(analysis), series)
        entries = dict(zip(legend_labels(fig), looks(fig)))
        assert [label for label in entries if label in names] == names, analysis
        drawn = [entries[name] for name in names]
        assert len(set(drawn)) == n, analysis  # no two specs alike...
        assert len({(rgb, style) for rgb, style, _ in drawn}) == n, analysis  # ...even unmarked
        for rgb, _, _ in drawn:
            assert contrast_on_white(rgb) >= 2, (analysis, rgb)  # no faint yellow line
        assert_legible(fig)


def params(**by_kind):
    kinds = {k: 0 for k in ("embedding", "positional", "attention", "ffn", "norm", "output_head")}
    return {"by_kind": {**kinds, **by_kind}}


def bar_widths(ax):
    """{kind: [(row, width)]} of a horizontal bar panel (row 0 at the top)."""
    out = {}
    for bars in ax.containers:
        for bar in bars:
            row = round(bar.get_y() + bar.get_height() / 2 + 0.4)  # bars fill a row's middle 0.8
            out.setdefault(bars.get_label(), []).append((row, bar.get_width()))
    return out


def test_params_shows_per_kind_differences_from_the_first_spec():
    """A 0.01% difference is invisible in stacked totals: the second panel shows it by kind."""
    base = params(embedding=38_597_376, attention=28_320_768, ffn=56_669_184, norm=38_400)
    rms = params(embedding=38_597_376, attention=28_320_768, ffn=56_669_184, norm=19_200)
    tied = params(embedding=38_597_376, attention=28_320_768, ffn=56_669_184, norm=38_400,
                  output_head=-38_597_376)
    same = params(embedding=38_597_376, attention=28_320_768, ffn=56_669_184, norm=38_400)
    fig = draw(chart("params"), [("gpt2", base), ("rmsnorm", rms), ("tied", tied),
                                 ("same", same)])
    totals, diffs = fig.axes
    assert [t.get_text() for t in totals.get_yticklabels()] == ["gpt2", "rmsnorm", "tied", "same"]
    assert totals.get_ylim()[0] > totals.get_ylim()[1]  # the first spec on top
    assert totals.get_xlabel() == "parameters (millions)"
    assert diffs.get_title() == "difference from gpt2 by kind"
    assert diffs.get_xscale() == "symlog"
    assert [t.get_text() for t in diffs.get_yticklabels()] == ["rmsnorm", "tied", "same"]
    assert bar_widths(diffs) == {"norm": [(0, -19_200)], "output_head": [(1, -38_597_376)]}
    assert [t.get_text() for t in diffs.texts] == ["-19.2k", "-38.6M", "same"]
    renderer = rendered(fig)
    panel = diffs.get_window_extent(renderer)
    for text in diffs.texts:  # "-38.6M" ran past the axes into the spec names
        box = text.get_window_extent(renderer)
        assert panel.x0 <= box.x0 and box.x1 <= panel.x1, text.get_text()
    # The stacked panel and the legend: one colour per kind, far enough apart to tell (CIE76).
    assert legend_labels(fig) == ["embedding", "positional", "attention", "ffn", "norm",
                                  "output_head"]
    lab = [cie_lab(rgb) for (rgb,) in looks(fig)]
    nearest = min(math.dist(a, b) for i, a in enumerate(lab) for b in lab[i + 1:])
    assert nearest > 25  # the old embedding #4C72B0 and output_head #8172B3 were 16 apart
    assert_legible(fig)


@pytest.mark.parametrize("n", [1, 2, 14, 30])
def test_the_params_chart_grows_with_the_specs_instead_of_widening(n):
    """Issue 19 item 13: with 14 specs the chart was a strip 8x wider than tall."""
    series = [(name, params(ffn=1000 + i, norm=10)) for i, name in enumerate(spec_names(n))]
    fig = draw(chart("params"), series)
    assert fig.get_size_inches()[0] == pytest.approx(6.0)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == spec_names(n)
    assert_legible(fig)


def test_params_with_one_spec_or_no_difference():
    (ax,) = draw(chart("params"), [("only", params(ffn=10))]).axes
    assert ax.get_xlabel() == "parameters"
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
    for ax in fig.axes:  # training, validation
        baselines = [line for line in ax.lines if "baseline" in line.get_label()]
        assert [line.get_label() for line in baselines] == [
            "unigram baseline 3.341 (gelu, relu)", "unigram baseline 4 (bytes2)"]
        assert [line.get_ydata()[0] for line in baselines] == [3.3412, 4.0]
    assert [ax.get_title() for ax in fig.axes] == ["training", "validation"]
    assert [list(line.get_ydata()) for line in fig.axes[1].lines[:3]] == [
        [5.6, 3.0], [5.6, 3.1], [5.6, 3.2]]
    fig = draw(chart("train"), [("a", curve(3.0, 3.3)), ("b", curve(3.1, 3.3))])
    assert [label for label in legend_labels(fig) if "baseline" in label] == [
        "unigram baseline 3.3 (all specs)"]


def sweep_point(label, final, spread, seeds=5):
    """A sweep point whose loss falls from 5.7 to ``final`` over 400 steps, its seeds
    ``spread`` apart throughout."""
    tokens = [step * 1024 for step in range(0, 401, 50)]
    mean = [final + 3.6 * math.exp(-t / 40_960) for t in tokens]
    return {"label": label, "curve": {"tokens": tokens, "mean": mean, "seeds": seeds,
                                      "low": [m - spread / 2 for m in mean],
                                      "high": [m + spread / 2 for m in mean]},
            "final_val_loss": {"mean": final, "half_width": spread},
            "costs": {"parameters": 140_672, "training_flops_per_token": 885_000}}


def test_the_sweep_cost_chart_labels_a_narrow_range_of_costs_legibly():
    """The positional sweep's parameters span 132k-141k: a log axis labelled its minor ticks
    "1.34x10^5" and the next on top of each other."""
    near, far = sweep_point("learned", 2.7, 0.02), sweep_point("rope", 2.12, 0.02)
    near["costs"] = {"parameters": 132_480, "training_flops_per_token": 885_000}
    fig = cost_figure({"sweep": "positional", "points": [sweep_point("a", 2.7, 0.02), near]})
    params_axis = fig.axes[0]
    assert params_axis.get_xscale() == "linear"
    assert [t.get_text() for t in params_axis.get_xticklabels()][1:-1] == [
        "132.5k", "135k", "137.5k", "140k"]
    assert_legible(fig)
    far["costs"] = {"parameters": 13_248_000, "training_flops_per_token": 88_500_000}
    fig = cost_figure({"sweep": "positional", "points": [sweep_point("a", 2.7, 0.02), far]})
    assert fig.axes[0].get_xscale() == "log"
    assert_legible(fig)


def test_a_task_sweeps_cost_chart_plots_its_accuracy():
    """A task sweep compares accuracy: the cost chart plots each point's final accuracy (mean
    and CI), not its loss on the targets."""
    points = [sweep_point("n_pairs=1", 2.0, 0.02), sweep_point("n_pairs=2", 2.0, 0.02)]
    for point, accuracy in zip(points, (0.55, 0.9)):
        point["final_accuracy"] = {"mean": accuracy, "half_width": 0.05}
    fig = cost_figure({"sweep": "recall", "metric": "final_accuracy", "higher_is_better": True,
                       "points": points})
    axis = fig.axes[0]
    assert axis.get_ylabel() == "final accuracy (mean, 95% CI)"
    assert "final accuracy against cost" in fig._suptitle.get_text()
    plotted = sorted(y for line in axis.get_lines() for y in line.get_ydata())
    assert 0.55 in plotted and 0.9 in plotted and 2.0 not in plotted
    assert_legible(fig)


def test_the_sweep_curves_show_the_seed_bands():
    """Issue 19 item 13: the loss falls by 3.6 nats and the seeds differ by 0.02, so on one
    axis from the start each band was thinner than its line. The second panel zooms in."""
    report = {"sweep": "positional", "points": [sweep_point("learned", 2.70, 0.02),
                                                sweep_point("rope", 2.12, 0.02)]}
    fig = curves_figure(report)
    whole, zoom = fig.axes
    assert whole.get_ylim()[0] < 2.1 and whole.get_ylim()[1] > 5.7  # the whole run
    low, high = zoom.get_ylim()
    band = 0.02 / (high - low)  # of the zoomed panel's height
    whole_band = 0.02 / (whole.get_ylim()[1] - whole.get_ylim()[0])
    assert whole_band < 0.006 and band > 0.02  # from half a percent of the height to 2%+
    assert zoom.get_xlim() == (200 * 1024, 400 * 1024)  # the second half
    assert len(zoom.collections) == 2  # the two bands
    assert legend_labels(fig) == ["learned", "rope"]
    assert fig.get_suptitle() == "sweep positional: validation loss, mean over 5 seeds"
    assert_legible(fig)


@pytest.mark.parametrize("n", [4, 16])
def test_sweep_charts_give_every_point_its_own_look(n):
    report = {"sweep": "s", "points": [sweep_point(f"point={i}", 2 + i / 50, 0.02)
                                       for i in range(n)]}
    fig = curves_figure(report)
    assert len(set(looks(fig))) == n
    assert_legible(fig)
    fig = cost_figure(report)
    for ax in fig.axes:  # error bars: colour and marker tell the points apart
        points = [bars.lines[0] for bars in ax.containers]
        assert len({(to_rgb(p.get_color()), p.get_marker()) for p in points}) == n
    assert len(legend_labels(fig)) == n
    assert_legible(fig)


def test_charts_render_to_png_and_svg_without_pyplot(tmp_path):
    from explorer.analysis.plots import save

    fig = draw(chart("gradflow"), [("a", gradflow([1e-3, 2e-3], after=[1e-3, 0.0]))])
    assert isinstance(fig, Figure)
    save(fig, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = to_svg(fig)
    assert svg.startswith("<?xml") and "<svg" in svg
    assert "matplotlib.pyplot" not in sys.modules  # the object API: no global figure state


def test_sweep_charts_with_500_points_name_eleven_and_draw_the_rest_grey():
    """Issue 23: 500 legend entries took seconds to draw and could not be read. The 5 lowest
    and 5 highest final losses and the best one's baseline keep their own looks."""
    finals = [2 + (i * 7919 % 500) / 1000 for i in range(500)]  # each of 2.000..2.499 once
    points = [{**sweep_point(f"p={i}", final, 0.02), "baseline": "p=3"}
              for i, final in enumerate(finals)]
    report = {"sweep": "big", "points": points}
    order = sorted(range(500), key=finals.__getitem__)
    named = sorted({*order[:5], *order[-5:], 3})
    curves, cost = curves_figure(report), cost_figure(report)
    lines = curves.legends[0].legend_handles[1:]  # each named point its own look
    assert len({(to_rgb(h.get_color()), h.get_linestyle(), h.get_marker()) for h in lines}) == 11
    for ax in cost.axes:
        bars = [c.lines[0] for c in ax.containers[1:]]  # the first: the grey others
        assert len({(to_rgb(b.get_color()), b.get_marker()) for b in bars}) == 11
    for fig in (curves, cost):
        assert legend_labels(fig) == ["the other 489 points"] + [f"p={i}" for i in named]
        assert fig.get_suptitle().splitlines()[1] == (
            "in colour: the 5 lowest and 5 highest final losses, and the best one's baseline")
        assert_legible(fig)
    whole, zoom = curves_figure(report).axes
    (others,) = [c for c in whole.collections if c.get_label() == "the other 489 points"]
    assert len(others.get_segments()) == 489
