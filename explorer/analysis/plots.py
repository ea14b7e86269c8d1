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
# A series (a spec, a sweep point) takes one of the first seven colours (yellow is too faint for
# a line) with a line style and a marker: colours cycle fastest, and each round through them
# takes the next style, so the 8th spec is a dashed blue with squares, never the 1st spec again.
SERIES_COLOURS = PALETTE[:7]
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D")
# A chart's width (inches), and the smallest text on it (points). Pages scale a chart down to
# the screen: a phone's 390 px show 6 inches (576 px) at 0.64 of their size, 10 pt text 8.5 px
# high; a desktop shows them as they are, 10 pt as 13 px.
WIDTH = 6.0
SMALLEST_TEXT = 10
LEGEND_FONT = SMALLEST_TEXT
DPI = 120


def colour(i):
    """The i-th colour of PALETTE (repeating), for categories (a kind of parameter, say)."""
    return PALETTE[i % len(PALETTE)]


def series_style(i):
    """How the i-th series is drawn: ``{"color", "linestyle", "marker"}``, for ``ax.plot(...,
    **series_style(i))``. The first 7 x 16 series differ in (colour, line style, marker), the
    first 28 already in (colour, line style) and in (colour, marker)."""
    round_, k = divmod(i, len(SERIES_COLOURS))
    return {"color": SERIES_COLOURS[k], "linestyle": LINE_STYLES[round_ % len(LINE_STYLES)],
            "marker": MARKERS[(round_ + round_ // len(MARKERS)) % len(MARKERS)]}


def legend_below(fig, fontsize=LEGEND_FONT):
    """One legend for the whole figure, below its panels, so it never covers data: each label of
    every panel once, in as many columns as fit the figure's width. The figure grows by the
    legend's height (it needs ``layout="constrained"``, as :func:`draw` makes). Returns the
    Legend, or None when nothing is labelled."""
    import textwrap

    entries = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if not entries:
        return None
    width, height = fig.get_size_inches()
    # An entry: its text at about 0.6 em a character, the handle and the gaps (2.8 em); a label
    # longer than the figure is wide is wrapped, so the legend never widens the figure.
    fits = int((width * 72 / fontsize - 2.8) / 0.6)
    labels = [textwrap.fill(label, fits) for label in entries]
    longest = max(len(line) for label in labels for line in label.splitlines())
    columns = max(1, min(len(labels), int(width // ((longest * 0.6 + 2.8) * fontsize / 72))))
    lines = sum(label.count("\n") + 1 for label in labels)
    fig.set_size_inches(width, height + math.ceil(lines / columns) * 1.4 * fontsize / 72 + 0.1)
    return fig.legend(list(entries.values()), labels, loc="outside lower center",
                      ncols=columns, fontsize=fontsize, frameon=False)


def draw(chart, series):
    """A Figure with ``chart`` drawn for ``series`` (``[(label, result), ...]``), titled."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=chart.size, layout="constrained")
    chart.load()(fig, series)
    fig.suptitle(chart.title)
    return readable(fig)


def readable(fig, smallest=SMALLEST_TEXT):
    """``fig`` with no text smaller than ``smallest`` points (tick labels, titles, legends,
    annotations): what a page shows must stay legible when a phone scales the chart down."""
    from matplotlib.text import Text

    for ax in fig.axes:
        for axis in ("x", "y"):
            ticks = getattr(ax, f"{axis}axis").get_ticklabels()
            size = min((t.get_fontsize() for t in ticks), default=smallest)
            if size < smallest:
                ax.tick_params(axis=axis, which="both", labelsize=smallest)
    for text in fig.findobj(Text):
        if text.get_fontsize() < smallest:
            text.set_fontsize(smallest)
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
    """Plot ``lines`` (``[(label, xs, ys, style), ...]``, ``style`` a colour or a
    :func:`series_style`) on a log y axis, zeros made visible.

    A log scale cannot show 0, so a line would silently lose its zero points (and an all-zero
    line vanish while staying in the legend). Zeros are drawn as hollow triangles on a dotted
    line at ``floor`` marked "0"; a line that is all zero is drawn there, in its own colour and
    line style with triangles, and labelled "(all zero)".
    """
    ax.set_yscale("log")
    any_zero = False
    for label, xs, ys, style in lines:
        style = {"marker": "o", **({"color": style} if isinstance(style, str) else style)}
        zero_xs = [x for x, y in zip(xs, ys) if y == 0]
        any_zero = any_zero or bool(zero_xs)
        if len(zero_xs) == len(xs):
            ax.plot(xs, [floor] * len(xs), markersize=5, label=f"{label} (all zero)",
                    **{**style, "marker": "v"})
            continue
        ax.plot(xs, [y if y != 0 else math.nan for y in ys], markersize=4, label=label, **style)
        if zero_xs:
            ax.plot(zero_xs, [floor] * len(zero_xs), linestyle="none", marker="v",
                    markerfacecolor="none", color=style["color"])
    if any_zero:
        ax.axhline(floor, color="grey", linestyle=":", linewidth=0.8)
        ax.text(1.01, floor, "0", transform=ax.get_yaxis_transform(), va="center",
                color="grey", fontsize=8)
        ax.set_ylim(bottom=floor / 2)
