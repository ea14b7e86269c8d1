"""Parameter counts: total, trainable, by component kind, per block, and with the head tied."""

import math

from explorer import Analysis, Chart, hookimpl
from explorer.model.contracts import active_count_of_block, active_parameter_count
from explorer.spec.layers import index_text
from explorer.model.stack import layer_blocks, stack_plan, stack_total


def _kind_of(model):
    """Map each parameter name to the component kind of its nearest tagged module."""
    kinds = {}
    for module_name, module in model.named_modules():
        kind = getattr(module, "explorer_kind", None)
        for pname, _ in module.named_parameters(recurse=False):
            key = f"{module_name}.{pname}" if module_name else pname
            kinds[key] = kind
    # Untagged modules inherit the kind of their closest tagged ancestor.
    resolved = {}
    for name in kinds:
        parts = name.split(".")
        kind = None
        for i in range(len(parts) - 1, -1, -1):
            module = model.get_submodule(".".join(parts[:i])) if i else model
            kind = getattr(module, "explorer_kind", None)
            if kind:
                break
        resolved[name] = kind or "other"
    return resolved


def unique_parameters(model):
    """(name, parameter) pairs, each tensor once: a tied head is the embedding's Parameter.

    Identity rather than data_ptr(), so it also works on the meta device (no storage).
    """
    seen = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        yield name, p


def count(ctx):
    model = ctx.compact_model()  # one block per distinct layer, standing for the stack
    plan = stack_plan(model)
    kinds = _kind_of(model)
    by_kind = {k: 0 for k in ("embedding", "positional", "attention", "ffn", "norm", "output_head")}
    per_block = [{} for _ in range(plan.n_layers)]
    layers_of = [plan.layers_of(k) for k in range(len(plan.built))]
    total = trainable = 0
    for name, p in unique_parameters(model):
        n = p.numel()
        kind = kinds.get(name, "other")
        layers = [None]  # outside the blocks: counted once
        if name.startswith("trf_blocks."):
            layers = layers_of[int(name.split(".")[1])]  # the layers this block stands for
            if not layers:
                continue  # built only to measure the block after it
        total += n * len(layers)
        trainable += n * len(layers) if p.requires_grad else 0
        by_kind[kind] = by_kind.get(kind, 0) + n * len(layers)
        for i in layers:
            if i is not None:
                per_block[i][kind] = per_block[i].get(kind, 0) + n
    for block in per_block:
        block["total"] = sum(block.values())
    head = model.out_head.weight
    tied = head is model.tok_emb.weight
    active_of = {id(block): active_count_of_block(block) for block in model.trf_blocks}
    return {
        "total": total,
        "trainable": trainable,
        # Used per token (explorer.model.contracts point 7): a mixture of experts counts its router,
        # shared experts and top_k experts; everything else counts whole.
        "active": stack_total(model, active_parameter_count, active_count_of_block),
        "by_kind": by_kind,
        "per_block": per_block,
        "active_per_block": [active_of[id(block)] for block in layer_blocks(model)],
        "head_tied": tied,
        # What the model would have with the head tied to the embedding (the book's 124M figure).
        "with_tied_head": total if tied else total - head.numel(),
    }


def render(result):
    lines = [f"total            {result['total']:>15,}",
             f"trainable        {result['trainable']:>15,}",
             f"with tied head   {result['with_tied_head']:>15,}"
             + ("  (the head is tied)" if result["head_tied"] else "")]
    if result["active"] != result["total"]:
        lines.append(f"active per token {result['active']:>15,}  "
                     f"({result['active'] / result['total']:.1%} of the total)")
    lines.append("by kind:")
    for kind, n in result["by_kind"].items():
        share = n / result["total"] if result["total"] else 0
        lines.append(f"  {kind:<14} {n:>15,}  {share:6.1%}")
    lines += _block_lines(result["per_block"], result["active_per_block"])
    return "\n".join(lines)


def _block_lines(blocks, active):
    """Per block, the blocks alike on one line: ``each of 12 blocks: ...``, ``blocks 1-3: ...``."""
    groups = {}
    for i, (block, used) in enumerate(zip(blocks, active)):
        groups.setdefault(repr((block, used)), (block, used, []))[2].append(i)
    lines = []
    for block, used, indices in groups.values():
        label = (f"each of {len(blocks)} blocks" if len(groups) == 1
                 else f"block{'s' if len(indices) > 1 else ''} {index_text(indices)}")
        parts = ", ".join(f"{k} {v:,}" for k, v in block.items())
        lines.append(f"{label}: {parts}" + (f", active {used:,}" if used != block["total"] else ""))
    return lines


def figures(result):
    return {"total": result["total"], "trainable": result["trainable"],
            "active": result["active"],
            "with_tied_head": result["with_tied_head"], "head_tied": result["head_tied"],
            **{f"by_kind.{kind}": n for kind, n in result["by_kind"].items()}}


def _kinds(series):
    kinds = []
    for _, result in series:
        kinds.extend(k for k in result["by_kind"] if k not in kinds)
    return kinds


def _short(n):
    """A signed parameter count in a few characters: +18.4k, -38.6M."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:+.3g}{unit}"
    return f"{n:+,}"


ROW = 0.26  # inches per spec: the chart grows with the number of specs, never a strip...
TALLEST = 1.8  # ...until it is this many times as tall as wide: then the rows get thinner


def _unit(largest):
    """(divisor, axis label suffix) that keep a parameter axis's ticks short."""
    for scale, name in ((1e9, "billions"), (1e6, "millions"), (1e3, "thousands")):
        if largest >= scale:
            return scale, f" ({name})"
    return 1, ""


def draw_chart(fig, series):
    """Above: parameters by kind, a stacked horizontal bar per spec, the first on top. Below:
    each other spec's differences from the first by kind, on a symmetric log scale so a
    difference under 1% of the total still shows. Colours are kinds in both panels."""
    from explorer.analysis.plots import WIDTH, colour, legend_below

    kinds = _kinds(series)
    labels = [label for label, _ in series]
    counts = {kind: [r["by_kind"].get(kind, 0) for _, r in series] for kind in kinds}
    rows = [len(series)] + ([len(series) - 1] if len(series) > 1 else [])
    margins = 1.6 + 0.5 * (len(rows) - 1)  # titles, axis labels, the legend (inches)
    row = min(ROW, (TALLEST * WIDTH - margins) / sum(rows))
    heights = [max(1.0, row * n) for n in rows]
    fig.set_size_inches(WIDTH, margins - 0.4 + sum(heights))  # the legend adds its own height
    axes = fig.subplots(len(heights), 1, squeeze=False, height_ratios=heights)[:, 0]
    scale, unit = _unit(max(sum(r["by_kind"].values()) for _, r in series))
    ax, lefts = axes[0], [0.0] * len(series)
    for k, kind in enumerate(kinds):
        widths = [n / scale for n in counts[kind]]
        ax.barh(range(len(series)), widths, left=lefts, height=0.7, label=kind, color=colour(k))
        lefts = [left + w for left, w in zip(lefts, widths)]
    ax.set_yticks(range(len(series)), labels)
    ax.set_ylim(len(series) - 0.5, -0.5)  # the first spec on top
    ax.set_xlabel(f"parameters{unit}")
    ax.set_title("each spec's total, stacked by kind", fontsize=10)
    legend_below(fig)
    if len(series) > 1:
        _draw_differences(axes[1], kinds, labels, counts)


def _ink(background):
    """Black or white, whichever contrasts more with ``background`` (WCAG luminance)."""
    from matplotlib.colors import to_rgb

    rgb = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(background)]
    luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    return "white" if (luminance + 0.05) ** 2 < 1.05 * 0.05 else "black"


def _draw_differences(ax, kinds, labels, counts):
    """A row per spec after the first: a bar per kind whose count differs from the first's."""
    from explorer.analysis.plots import SMALLEST_TEXT, colour

    ax.set_title(f"difference from {labels[0]} by kind", fontsize=10)
    rows = [[(k, counts[kind][j] - counts[kind][0]) for k, kind in enumerate(kinds)
             if counts[kind][j] != counts[kind][0]] for j in range(1, len(labels))]
    if not any(rows):
        ax.text(0.5, 0.5, "no differences", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    for row, bars in enumerate(rows):  # a row's bars share its height, in the order of kinds
        if not bars:
            ax.annotate("same", (0, row), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=SMALLEST_TEXT, color="grey")
        height = 0.8 / max(1, len(bars))
        for i, (k, diff) in enumerate(bars):
            drawn = ax.barh(row - 0.4 + (i + 0.5) * height, diff, height, color=colour(k),
                            label=kinds[k])
            # Inside the bar: on a log scale even a difference of 1 is a decade wide, room for
            # its few characters, and a label past a long bar's end would run off the axes.
            ax.bar_label(drawn, labels=[_short(diff)], label_type="center",
                         fontsize=SMALLEST_TEXT, color=_ink(colour(k)))
    ax.set_yticks(range(len(rows)), labels[1:])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xscale("symlog", linthresh=1)
    largest = max(abs(diff) for bars in rows for _, diff in bars)
    top = math.ceil(math.log10(2 * largest))  # symmetric
    ax.set_xlim(-(10 ** top), 10 ** top)
    decades = [10 ** k for k in range(0, top + 1, max(1, math.ceil(top / 3)))]
    ticks = [-d for d in reversed(decades)] + [0] + decades
    ax.set_xticks(ticks, [_short(t) if t else "0" for t in ticks])
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_xlabel("parameters (symmetric log scale)")


@hookimpl
def explorer_analyses():
    return [Analysis(
        name="params", run=count, render=render, needs_weights=False, figures=figures,
        charts=(Chart("params", "Parameters by component kind", draw_chart),),
        description="Parameter counts: total, trainable, by kind, per block, tied head.")]
