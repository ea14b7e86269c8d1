"""A sweep's charts (matplotlib's object API: no pyplot, no global state, no display).

- ``curves``: validation loss against training tokens, one line per grid point (the mean
  over its seeds) in a band from the lowest to the highest seed;
- ``cost``: final validation loss against cost (parameters; training FLOPs per token), with
  the 95% confidence interval as error bars.
"""

from pathlib import Path

from ..analysis.plots import save


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def curves_figure(report):
    """Validation loss against training tokens: a line per point (its seeds' mean) in a band
    from its lowest to its highest seed."""
    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot()
    for i, point in enumerate(report["points"]):
        band = point["curve"]
        if not band:
            continue
        colour = f"C{i % 10}"
        ax.plot(band["tokens"], band["mean"], color=colour,
                label=f"{point['label']} (n={band['seeds']})")
        ax.fill_between(band["tokens"], band["low"], band["high"], color=colour, alpha=0.2,
                        linewidth=0)
    ax.set_xlabel("training tokens")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(f"sweep {report['sweep']}: mean over seeds, band from lowest to highest seed")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def cost_figure(report):
    """Final validation loss (mean, 95% CI) against parameters and training FLOPs per token."""
    fig = _figure(10, 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, cost, label in ((axes[0], "parameters", "parameters"),
                            (axes[1], "training_flops_per_token", "training FLOPs per token")):
        for i, point in enumerate(report["points"]):
            summary, costs = point["final_val_loss"], point["costs"]
            if summary["mean"] is None or not costs:
                continue
            error = summary["half_width"] or 0.0
            ax.errorbar([costs[cost]], [summary["mean"]], yerr=[error], fmt="o", capsize=4,
                        color=f"C{i % 10}", label=point["label"])
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("final validation loss (mean, 95% CI)")
    axes[1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"sweep {report['sweep']}: final loss against cost")
    return fig


# file stem -> (figure builder, caption): what --plots writes and --html inlines.
CHARTS = {
    "curves": (curves_figure, "Validation loss against training tokens, band from the lowest "
                              "to the highest seed"),
    "cost": (cost_figure, "Final validation loss (mean, 95% CI) against cost"),
}


def figures(report):
    """``[(stem, caption, Figure), ...]``: the charts the report has data for (none before a
    run has finished)."""
    if not any(p["curve"] for p in report["points"]):
        return []
    return [(stem, caption, build(report)) for stem, (build, caption) in CHARTS.items()]


def write_plots(report, out_dir):
    """Write the charts the report has data for into ``out_dir``; return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, _, fig in figures(report):
        save(fig, out_dir / f"{stem}.png")
        written.append(str(out_dir / f"{stem}.png"))
    return written
