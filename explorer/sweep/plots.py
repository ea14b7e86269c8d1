"""A sweep's charts (matplotlib's object API: no pyplot, no global state, no display).

- ``curves``: validation loss against training tokens, one line per grid point (the mean
  over its seeds) in a band from the lowest to the highest seed: the whole run, then its
  second half zoomed in, where the seeds' spread is big enough to see;
- ``cost``: final validation loss against cost (parameters; training FLOPs per token), with
  the 95% confidence interval as error bars;
- ``ladder`` (a sweep with ``scale:``): final loss against size on log axes, the power-law fit
  of each variant with its band, extrapolated (dashed) to the size the sweep names.

Each point has its own colour, line style and marker (:func:`explorer.analysis.plots.series_style`), the
legend below the panels. Beyond ``MAX_SERIES`` points (a 500-point grid) no legend could name them
all: the lowest and highest final losses and the best point's baseline keep their own looks and
legend entries, and the other points are drawn behind them in grey, one legend entry for all.
"""

from pathlib import Path

from ..analysis.plots import WIDTH, legend_below, readable, save, series_style

MAX_SERIES = 16  # up to this many points each has its own look and legend entry
EACH_END = 5  # beyond: the points with the 5 lowest and the 5 highest final losses ...
OTHERS = "0.6"  # ... and the rest in this grey
OTHERS_NOTE = (f"in colour: the {EACH_END} lowest and {EACH_END} highest final losses, "
               "and the best one's baseline")


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _labels(points):
    """(a legend label per point, what the means are over): the seed count once when every
    point has as many, else beside each point."""
    counts = {p["curve"]["seeds"] for p in points}
    if len(counts) == 1:
        n = counts.pop()
        return [p["label"] for p in points], f"{n} seed{'s' * (n != 1)}"
    return [f"{p['label']} (n={p['curve']['seeds']})" for p in points], "its seeds (n)"


def highlighted(points, metric="final_val_loss", higher_is_better=False):
    """The positions (in ``points``) of the points drawn in their own look, in order: every
    point with a final ``metric``, up to MAX_SERIES; beyond, the EACH_END best and worst and
    the best one's baseline (a point's ``baseline`` is a label)."""
    sign = -1 if higher_is_better else 1
    ranked = sorted((i for i, p in enumerate(points) if p[metric]["mean"] is not None),
                    key=lambda i: sign * points[i][metric]["mean"])
    if len(ranked) <= MAX_SERIES:
        return sorted(ranked)
    chosen = set(ranked[:EACH_END] + ranked[-EACH_END:])
    baseline = points[ranked[0]].get("baseline")
    chosen.update(i for i in ranked if points[i]["label"] == baseline)
    return sorted(chosen)


def _looks(report):
    """Report position -> the number of its look (series_style), for the points drawn in
    colour; the same in both charts, so a point keeps its colour from one to the other."""
    points = report["points"]
    if len(points) <= MAX_SERIES:
        return {i: i for i in range(len(points))}
    chosen = highlighted(points, report.get("metric", "final_val_loss"),
                         report.get("higher_is_better", False))
    return {i: j for j, i in enumerate(chosen)}


def _others_label(n):
    return f"the other {n} points" if n != 1 else "the other point"


def _zoomed(ax, bands, start):
    """Show ``bands`` from token ``start`` on, the y axis fitted to them (a tenth of margin)."""
    values = [v for band in bands for t, low, high in zip(band["tokens"], band["low"],
                                                          band["high"])
              if t >= start for v in (low, high)]
    if not values:
        return
    low, high = min(values), max(values)
    margin = (high - low) / 10 or abs(high) / 100 or 0.01
    ax.set_xlim(start, max(band["tokens"][-1] for band in bands))
    ax.set_ylim(low - margin, high + margin)


def curves_figure(report):
    """Validation loss against training tokens: a line per point (its seeds' mean) in a band
    from its lowest to its highest seed; above the whole run, below its second half zoomed in
    (from the start the loss falls by nats, and the seeds differ by hundredths). Beyond
    MAX_SERIES points, the others' means are thin grey lines behind the highlighted ones."""
    from matplotlib.collections import LineCollection
    from matplotlib.ticker import EngFormatter

    fig = _figure(WIDTH, 5.6)
    whole, zoom = fig.subplots(2, 1, height_ratios=(2, 3))
    looks = _looks(report)
    points = [(i, p) for i, p in enumerate(report["points"]) if p["curve"]]
    labels, seeds = _labels([p for _, p in points])
    coloured = [(looks[i], p, label) for (i, p), label in zip(points, labels) if i in looks]
    grey = [p["curve"] for i, p in points if i not in looks]
    for ax in (whole, zoom):
        if grey:
            ax.add_collection(LineCollection(
                [list(zip(band["tokens"], band["mean"])) for band in grey], colors=OTHERS,
                linewidths=0.6, label=_others_label(len(grey)) if ax is whole else None,
                zorder=1))
        for look, point, label in coloured:
            band, style = point["curve"], series_style(look)
            ax.plot(band["tokens"], band["mean"], markersize=3,
                    label=label if ax is whole else None, **style)
            ax.fill_between(band["tokens"], band["low"], band["high"], color=style["color"],
                            alpha=0.25, linewidth=0.6, edgecolor=style["color"])
        ax.grid(True, alpha=0.3)
        ax.set_ylabel("val loss (nats/token)")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k tokens, not 200000
    bands = [p["curve"] for _, p, _ in coloured] + [
        {"tokens": band["tokens"], "low": band["mean"], "high": band["mean"]} for band in grey]
    last = max(band["tokens"][-1] for band in bands)
    _zoomed(zoom, bands, last / 2)
    whole.set_title("the whole run", fontsize=10)
    zoom.set_title("second half, zoomed in: bands span the lowest to the highest seed",
                   fontsize=10)
    zoom.set_xlabel("training tokens")
    title = f"sweep {report['sweep']}: validation loss, mean over {seeds}"
    fig.suptitle(f"{title}\n{OTHERS_NOTE}" if grey else title)
    legend_below(fig)
    return readable(fig)


def _cost_axis(ax, costs):
    """A log axis where the costs span a decade or more, else a linear one (a log axis over
    133k-141k labels its minor ticks in scientific notation, on top of each other); 140k, 1M
    rather than 1.4e5."""
    from matplotlib.ticker import EngFormatter, MaxNLocator, NullFormatter

    positive = [c for c in costs if c and c > 0]
    if positive and max(positive) >= 10 * min(positive):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))


def cost_figure(report):
    """The report's metric (final validation loss, or a task sweep's accuracy; mean, 95% CI)
    against parameters and training FLOPs per token. Beyond MAX_SERIES points, the others are
    small grey bars behind the highlighted ones."""
    from .results import LABELS

    metric = report.get("metric", "final_val_loss")
    fig = _figure(WIDTH, 3.2)
    axes = fig.subplots(1, 2, sharey=True)
    looks = _looks(report)
    points = [(i, p) for i, p in enumerate(report["points"])
              if p[metric]["mean"] is not None and p["costs"]]
    grey = [p for i, p in points if i not in looks]
    for ax, cost, label in ((axes[0], "parameters", "parameters"),
                            (axes[1], "training_flops_per_token", "training FLOPs per token")):
        if grey:
            ax.errorbar([p["costs"][cost] for p in grey],
                        [p[metric]["mean"] for p in grey],
                        yerr=[p[metric]["half_width"] or 0.0 for p in grey], fmt="o",
                        markersize=3, elinewidth=0.6, color=OTHERS, zorder=1,
                        label=_others_label(len(grey)))
        for i, point in ((i, p) for i, p in points if i in looks):
            summary, costs = point[metric], point["costs"]
            style = series_style(looks[i])
            error = summary["half_width"] or 0.0
            ax.errorbar([costs[cost]], [summary["mean"]], yerr=[error], fmt=style["marker"],
                        capsize=4, color=style["color"], label=point["label"])
        _cost_axis(ax, [p["costs"][cost] for p in report["points"] if p["costs"]])
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"final {LABELS[metric][0]} (mean, 95% CI)")
    title = f"sweep {report['sweep']}: final {LABELS[metric][0]} against cost"
    fig.suptitle(f"{title}\n{OTHERS_NOTE}" if grey else title)
    legend_below(fig)
    return readable(fig)


def ladder_figure(report):
    """Final loss against size on log axes: per variant its rungs (mean, 95% CI), its fit over
    the measured sizes with its band, and the extrapolation dashed up to extrapolate_to."""
    import numpy as np

    ladder = report["ladder"]
    fig = _figure(WIDTH, 4.2)
    ax = fig.subplots()
    for look, variant in enumerate(ladder["variants"]):
        style = series_style(look)
        done = [r for r in variant["rungs"] if r["final_val_loss"]["mean"] is not None]
        ax.errorbar([r["x"] for r in done], [r["final_val_loss"]["mean"] for r in done],
                    yerr=[r["final_val_loss"]["half_width"] or 0.0 for r in done],
                    fmt=style["marker"],
                    capsize=4, color=style["color"], label=variant["label"])
        fit = variant["fit"]
        if not fit:
            continue
        xs = np.asarray(fit["band"]["x"])
        curve = fit["E"] + fit["A"] * xs ** -fit["alpha"]
        last = int(np.sum(xs <= max(r["x"] for r in done) * (1 + 1e-9))) - 1  # xs ascend
        ax.plot(xs[:last + 1], curve[:last + 1], color=style["color"], linewidth=1.2)
        ax.plot(xs[max(last, 0):], curve[max(last, 0):], color=style["color"], linewidth=1.2,
                linestyle="--")
        ax.fill_between(xs, fit["band"]["low"], fit["band"]["high"], color=style["color"],
                        alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axvline(ladder["extrapolate_to"], color="0.5", linewidth=0.8, linestyle=":")
    ax.set_xlabel(ladder["x_name"])
    ax.set_ylabel("final val loss (nats/token)")
    ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"sweep {report['sweep']}: loss against size; fits with 95% bands, "
                 f"extrapolated (dashed) to {ladder['extrapolate_to']:.3g}")
    legend_below(fig)
    return readable(fig)


# file stem -> (figure builder, caption): what --plots writes and --html inlines.
CHARTS = {
    "curves": (curves_figure, "Validation loss against training tokens, band from the lowest "
                              "to the highest seed"),
    "cost": (cost_figure, "Final validation loss (mean, 95% CI) against cost"),
}
TASK_CAPTIONS = {"cost": "Final validation accuracy (mean, 95% CI) against cost"}


def figures(report):
    """``[(stem, caption, Figure), ...]``: the charts the report has data for (none before a
    run has finished)."""
    if not any(p["curve"] for p in report["points"]):
        return []
    task = report.get("metric") == "final_accuracy"
    charts = [(stem, TASK_CAPTIONS.get(stem, caption) if task else caption, build(report))
              for stem, (build, caption) in CHARTS.items()]
    if report.get("ladder"):  # a size ladder's fits
        charts.append(("ladder", "Final loss against size: rungs with 95% CIs, power-law fits "
                                 "with 95% bands, extrapolation dashed", ladder_figure(report)))
    return charts


def write_plots(report, out_dir):
    """Write the charts the report has data for into ``out_dir``; return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, _, fig in figures(report):
        save(fig, out_dir / f"{stem}.png")
        written.append(str(out_dir / f"{stem}.png"))
    return written
