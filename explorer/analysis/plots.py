"""Charts: the core makes a matplotlib Figure, an analysis's Chart draws on it, the core saves it.

Only matplotlib's object API (``matplotlib.figure.Figure``), never pyplot or ``matplotlib.use``:
no global state, no display; a Figure renders itself to PNG (Agg) or SVG when saved. matplotlib
is imported only when a chart is drawn. The helpers below are for analyses' draw functions.
"""

import io
import math
from pathlib import Path

from explorer.atomic import atomic_path

# Okabe & Ito's colour-blind-safe palette; yellow last, as it is faint on white.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000",
           "#F0E442")
DPI = 120


def colour(i):
    """The i-th colour of PALETTE (repeating)."""
    return PALETTE[i % len(PALETTE)]


def draw(chart, series):
    """A Figure with ``chart`` drawn for ``series`` (``[(label, result), ...]``), titled."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=chart.size, layout="constrained")
    chart.load()(fig, series)
    fig.suptitle(chart.title)
    return fig


def save(fig, path, fmt="png"):
    """Write ``fig`` to ``path`` through a temporary file: an interrupted run leaves no
    truncated file."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format=fmt, bbox_inches="tight")


def to_svg(fig):
    """``fig`` as an SVG document (text), for pages that inline their charts. Text is drawn as
    paths (matplotlib's default), so the page needs no fonts; no date is written, so the same
    figure gives the same SVG."""
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    return out.getvalue()


def write_plots(comparison, analyses, out_dir, fmt="png"):
    """Draw every chart of ``analyses`` (``{name: Analysis}``) that has results in
    ``comparison`` and save it as ``out_dir/<chart name>.<fmt>``.

    Returns ``(paths written, {chart file name: failure message})``: a chart that raises is
    reported, the others are still written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, failed, used = [], {}, set()
    for name, analysis in analyses.items():
        series = [(label, report["analyses"][name])
                  for label, report in zip(comparison["labels"], comparison["reports"])
                  if report["analyses"].get(name) is not None]
        if not series:
            continue
        for chart in analysis.charts:
            stem = chart.name if chart.name not in used else f"{name}-{chart.name}"
            used.add(stem)
            path = out_dir / f"{stem}.{fmt}"
            try:
                save(draw(chart, series), path, fmt)
            except Exception as exc:
                failed[path.name] = (f"chart {chart.name!r} of analysis {name!r} raised "
                                     f"{type(exc).__name__}: {exc}")
                continue
            written.append(str(path))
    return written, failed


# -- helpers for draw functions ----------------------------------------------------------------

def log_floor(values):
    """Where zeros are drawn on a log axis: a decade below the smallest positive value."""
    positive = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    return min(positive) / 10 if positive else 1e-8


def log_lines(ax, lines, floor):
    """Plot ``lines`` (``[(label, xs, ys, colour), ...]``) on a log y axis, zeros made visible.

    A log scale cannot show 0, so a line would silently lose its zero points (and an all-zero
    line vanish while staying in the legend). Zeros are drawn as hollow triangles on a dotted
    line at ``floor`` marked "0"; a line that is all zero is labelled "(all zero)".
    """
    ax.set_yscale("log")
    any_zero = False
    for label, xs, ys, line_colour in lines:
        zero_xs = [x for x, y in zip(xs, ys) if y == 0]
        any_zero = any_zero or bool(zero_xs)
        if len(zero_xs) == len(xs):
            ax.plot(xs, [floor] * len(xs), linestyle="none", marker="v", color=line_colour,
                    label=f"{label} (all zero)")
            continue
        ax.plot(xs, [y if y != 0 else math.nan for y in ys], marker="o", markersize=4,
                color=line_colour, label=label)
        if zero_xs:
            ax.plot(zero_xs, [floor] * len(zero_xs), linestyle="none", marker="v",
                    markerfacecolor="none", color=line_colour)
    if any_zero:
        ax.axhline(floor, color="grey", linestyle=":", linewidth=0.8)
        ax.text(1.01, floor, "0", transform=ax.get_yaxis_transform(), va="center",
                color="grey", fontsize=8)
        ax.set_ylim(bottom=floor / 2)
