"""PNG figures for ``explorer compare --plots DIR`` (matplotlib, Agg backend: no display needed)."""

from pathlib import Path

from .atomic import atomic_path

KIND_COLOURS = {"embedding": "#4C72B0", "positional": "#64B5CD", "attention": "#DD8452",
                "ffn": "#55A868", "norm": "#C44E52", "output_head": "#8172B3"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    with atomic_path(path) as tmp:  # an interrupted run leaves no truncated PNG
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")


def gradflow_chart(names, results, path):
    """Mean |grad| per block, one line per spec, log scale: the book's section 4.4 picture."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, result in zip(names, results):
        if not result:
            continue
        values = [b["all"] for b in result["per_block"]]
        ax.plot(range(len(values)), values, marker="o", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("block")
    ax.set_ylabel("mean |grad| of weight matrices")
    ax.set_title("Gradient flow per block (one LM step, at initialization)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _save(fig, path)
    plt.close(fig)


def params_chart(names, results, path):
    """Parameters by kind, one stacked bar per spec."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(names) + 2), 4))
    kinds = []
    for result in results:
        kinds.extend(k for k in (result or {}).get("by_kind", {}) if k not in kinds)
    bottoms = [0.0] * len(names)
    for kind in kinds:
        heights = [(r or {}).get("by_kind", {}).get(kind, 0) / 1e6 for r in results]
        ax.bar(names, heights, bottom=bottoms, label=kind, color=KIND_COLOURS.get(kind))
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    ax.set_ylabel("parameters (millions)")
    ax.set_title("Parameters by component kind")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    _save(fig, path)
    plt.close(fig)


def loss_chart(names, results, path):
    """Training and validation loss curves of the ``train`` analysis, one colour per spec."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, result) in enumerate(zip(names, results)):
        if not result:
            continue
        steps = [point["step"] for point in result["curve"]]
        colour = f"C{i}"
        ax.plot(steps, [p["train_loss"] for p in result["curve"]], color=colour, alpha=0.5,
                label=f"{name} train")
        ax.plot(steps, [p["val_loss"] for p in result["curve"]], color=colour, linestyle="--",
                label=f"{name} validation")
        ax.axhline(result["unigram_baseline"], color=colour, linestyle=":", linewidth=1,
                   label=f"{name} unigram baseline")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title("Training probe")
    ax.grid(True, alpha=0.3)
    ax.legend()
    _save(fig, path)
    plt.close(fig)


CHARTS = {"gradflow": ("gradflow.png", gradflow_chart), "params": ("params.png", params_chart),
          "train": ("loss.png", loss_chart)}


def write_plots(comparison, out_dir):
    """Write every chart the comparison has data for; return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for analysis, (filename, chart) in CHARTS.items():
        results = [r["analyses"].get(analysis) for r in comparison["reports"]]
        if any(results):
            chart(comparison["specs"], results, out_dir / filename)
            written.append(str(out_dir / filename))
    return written
