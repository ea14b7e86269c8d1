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


def draw_chart(fig, series):
    """Left: parameters by kind, one stacked bar per spec. Right: each kind's difference from the
    first spec on a symmetric log scale, so a difference under 1% of the total still shows."""
    from explorer.analysis.plots import colour

    kinds = _kinds(series)
    labels = [label for label, _ in series]
    counts = {kind: [r["by_kind"].get(kind, 0) for _, r in series] for kind in kinds}
    fig.set_size_inches(max(7.0, 2.2 * len(series) + 5), 4.5)
    axes = fig.subplots(1, 2 if len(series) > 1 else 1, squeeze=False)[0]
    bottoms = [0.0] * len(series)
    for k, kind in enumerate(kinds):
        heights = [n / 1e6 for n in counts[kind]]
        axes[0].bar(labels, heights, bottom=bottoms, label=kind, color=colour(k))
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    axes[0].set_ylabel("parameters (millions)")
    axes[0].set_title("by component kind")
    axes[0].tick_params(axis="x", labelrotation=20)
    axes[0].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if len(series) < 2:
        return
    ax, others = axes[1], series[1:]
    ax.set_title(f"difference from {labels[0]} by kind")
    if all(counts[kind][j] == counts[kind][0] for kind in kinds for j in range(len(series))):
        ax.text(0.5, 0.5, "no differences", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    width = 0.8 / len(others)
    for j, (label, _) in enumerate(others, 1):
        diffs = [counts[kind][j] - counts[kind][0] for kind in kinds]
        xs = [k + (j - 1 - (len(others) - 1) / 2) * width for k in range(len(kinds))]
        bars = ax.bar(xs, diffs, width, label=label, color=colour(j))
        ax.bar_label(bars, labels=[_short(d) if d else "" for d in diffs], fontsize=7)
    ax.set_yscale("symlog", linthresh=1)
    largest = max(abs(counts[kind][j] - counts[kind][0]) for kind in kinds
                  for j in range(len(series)))
    top = math.ceil(math.log10(10 * largest))  # symmetric, a decade of room for the labels
    ax.set_ylim(-(10 ** top), 10 ** top)
    decades = [10 ** k for k in range(0, top + 1, max(1, math.ceil(top / 4)))]
    ticks = [-d for d in reversed(decades)] + [0] + decades
    ax.set_yticks(ticks, [_short(t) if t else "0" for t in ticks])
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(kinds)), kinds, rotation=20)
    ax.set_ylabel("parameters (symmetric log scale)")
    ax.legend(fontsize="small")


@hookimpl
def explorer_analyses():
    return [Analysis(
        name="params", run=count, render=render, needs_weights=False, figures=figures,
        charts=(Chart("params", "Parameters by component kind", draw_chart),),
        description="Parameter counts: total, trainable, by kind, per block, tied head.")]
