"""The module tree with output shapes and parameter counts, like torchinfo's summary table.

One forward pass of a (1, seq_len) batch records each module's output shape through forward
hooks, on the meta device when the weights are not built (free at any size). Each parameter
tensor is counted once, in the first module that holds it: a tied output head shows 0 and
points at the embedding it shares, so the rows add up to the model's total.
"""

import re

from explorer import Analysis, Param, hookimpl
from explorer.model.stack import stack_plan


def _shape(output):
    if hasattr(output, "shape"):
        return list(output.shape)
    if isinstance(output, (tuple, list)):
        return [_shape(o) for o in output]
    return None


def module_rows(model, seq_len):
    """One row per module (pre-order): name, type, depth, output shape, parameter counts.

    A compact model (explorer.model.stack) lists every layer's block: the rows of the built block
    that stands for it, renamed.
    """
    rows = _stack_rows(_built_rows(model, seq_len), stack_plan(model))
    # Recursive counts: a row's own parameters plus those of every module below it. Rows are in
    # pre-order, so walking them backwards reaches every module before its parent: one pass,
    # even for DeepSeek-V3's 80,000 modules.
    by_name = {row["name"]: row for row in rows}
    for row in rows:
        row["params"], row["trainable"] = row["own_params"], row["own_trainable"]
    for row in reversed(rows):
        if row["name"]:
            parent = by_name[row["name"].rpartition(".")[0]]
            parent["params"] += row["params"]
            parent["trainable"] += row["trainable"]
    return rows


def _built_rows(model, seq_len):
    """The rows of the modules ``model`` holds, without the recursive counts."""
    import torch

    names = {module: name for name, module in model.named_modules()}
    shapes = {}

    def record(module, args, output):
        shapes.setdefault(names[module], _shape(output))  # a shared module: its first call

    handles = [m.register_forward_hook(record) for m in names]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model(torch.zeros(1, seq_len, dtype=torch.long, device=device))
    finally:
        for handle in handles:
            handle.remove()

    owner = {}  # id(parameter) -> "module.param" of the first module holding it
    rows = []
    for name, module in model.named_modules():
        own = trainable = 0
        tied = []
        for pname, p in module.named_parameters(recurse=False):
            full = f"{name}.{pname}" if name else pname
            if id(p) in owner:
                tied.append(f"{full} = {owner[id(p)]}")
                continue
            owner[id(p)] = full
            own += p.numel()
            trainable += p.numel() if p.requires_grad else 0
        rows.append({"name": name, "type": type(module).__name__,
                     "depth": name.count(".") + 1 if name else 0,
                     "kind": getattr(module, "explorer_kind", None),
                     "output_shape": shapes.get(name), "own_params": own,
                     "own_trainable": trainable, "tied": tied})
    return rows


def _stack_rows(rows, plan):
    """``rows`` of a compact model as a full model's: per layer, the rows of the built block
    that stands for it, its name (and the ties inside it) renamed to the layer's."""
    if plan.is_full:
        return rows
    block_of = re.compile(r"^trf_blocks\.(\d+)(?=\.|$)")
    blocks = [[] for _ in plan.built]
    out, first = [], None
    for row in rows:
        found = block_of.match(row["name"])
        if not found:
            out.append(row)
            continue
        first = len(out) if first is None else first
        blocks[int(found.group(1))].append(row)
    layers = []
    for i, k in enumerate(plan.counts):
        own = re.compile(rf"(?<![\w.])trf_blocks\.{k}(?=\.|$)")
        layers += [{**row, "name": own.sub(f"trf_blocks.{i}", row["name"]),
                    "tied": [own.sub(f"trf_blocks.{i}", t) for t in row["tied"]]}
                   for row in blocks[k]]
    return out[:first] + layers + out[first:]


def summary(ctx, depth, seq_len):
    cfg = ctx.spec.model
    if depth < 0:
        raise ValueError(f"summary: depth must be >= 0, got {depth}")
    seq_len = min(seq_len, cfg.context_length) if seq_len > 0 else cfg.context_length
    rows = module_rows(ctx.compact_model(), seq_len)
    root = rows[0]
    return {
        "input_shape": [1, seq_len],
        "depth": depth,
        "rows": [r for r in rows if r["depth"] <= depth],
        "total": root["params"],
        "trainable": root["trainable"],
        "non_trainable": root["params"] - root["trainable"],
        "tied": [t for r in rows for t in r["tied"]],
    }


def _tree_prefixes(rows):
    """torchinfo's "├─" / "└─" / "│ " drawing for rows listed in pre-order."""
    prefixes = []
    for i, row in enumerate(rows):
        if row["depth"] == 0:
            prefixes.append("")
            continue
        parts = []
        for level in range(1, row["depth"] + 1):
            # Is there a later row at this level before the tree climbs above it?
            more = False
            for later in rows[i + 1:]:
                if later["depth"] < level:
                    break
                if later["depth"] == level:
                    more = True
                    break
            if level == row["depth"]:
                parts.append("├─" if more else "└─")
            else:
                parts.append("│ " if more else "  ")
        prefixes.append("".join(parts))
    return prefixes


def _tail(row):
    return row["name"].rsplit(".", 1)[-1]


def _subtree_end(rows, i, stop):
    """The index after row ``i``'s last descendant (rows are in pre-order)."""
    j = i + 1
    while j < stop and rows[j]["depth"] > rows[i]["depth"]:
        j += 1
    return j


def _likeness(rows, i, end):
    """What a subtree looks like in the table, its root's name aside."""
    base = len(rows[i]["name"])
    return [(r["name"][base:], r["type"], r["output_shape"], r["params"], bool(r["tied"]))
            for r in rows[i:end]]


def _shown(rows, start=0, stop=None):
    """The rows to print: numbered siblings (blocks, experts) that look like the one before
    them, two or more in a row, print as one row (``1-95: 95 x PreNormBlock, each as 0``)."""
    stop = len(rows) if stop is None else stop
    shown, i = [], start
    while i < stop:
        end, run = _subtree_end(rows, i, stop), []
        if _tail(rows[i]).isdigit():
            like, j = _likeness(rows, i, end), end
            while j < stop and rows[j]["depth"] == rows[i]["depth"] and _tail(rows[j]).isdigit():
                after = _subtree_end(rows, j, stop)
                if _likeness(rows, j, after) != like:
                    break
                run.append(rows[j])
                j = after
        if len(run) < 2:
            shown.append(rows[i])
            i += 1
            continue
        first = rows[i]
        shown += [first, *_shown(rows, i + 1, end), {
            **first, "tied": [],
            "label": f"{_tail(run[0])}-{_tail(run[-1])}: {len(run)} x {first['type']}, each as "
                     f"{_tail(first)}",
            "count": f"{first['params']:,} each" if first["params"] else "--"}]
        i = j
    return shown


def render(result):
    rows = _shown(result["rows"])
    labels = [prefix + (row.get("label") or f"{_tail(row) or row['type']} ({row['type']})")
              if row["name"] else row["type"]
              for prefix, row in zip(_tree_prefixes(rows), rows)]
    shapes = [_shape_text(r) for r in rows]
    counts = [_count_text(r) for r in rows]
    w1 = max(len("Layer (type)"), *map(len, labels))
    w2 = max(len("Output Shape"), *map(len, shapes))
    w3 = max(len("Param #"), *map(len, counts))
    rule = "=" * (w1 + w2 + w3 + 4)
    lines = [rule, f"{'Layer (type)':<{w1}}  {'Output Shape':<{w2}}  {'Param #':>{w3}}", rule]
    lines.extend(f"{a:<{w1}}  {b:<{w2}}  {c:>{w3}}" for a, b, c in zip(labels, shapes, counts))
    lines.append(rule)
    lines.extend(_totals(result))
    lines.append(rule)
    return "\n".join(lines)


def _shape_text(row):
    return str(row["output_shape"]) if row["output_shape"] is not None else "--"


def _count_text(row):
    """The parameters a row counts (a folded run's: each one's), marked when it holds a tie."""
    text = row.get("count") or (f"{row['params']:,}" if row["params"] else "--")
    return text + " (tied)" if row["tied"] else text


def _totals(result):
    lines = [f"Total params: {result['total']:,}", f"Trainable params: {result['trainable']:,}",
             f"Non-trainable params: {result['non_trainable']:,}"]
    lines.extend(f"Tied (counted once): {t}" for t in result["tied"])
    lines.append(f"Input: {result['input_shape']} token ids; '--': no parameters, or not "
                 f"called through forward")
    return lines


def figures(result):
    """None: the tree is for reading, and its totals are the params analysis's figures."""
    return {}


def _module_line(row):
    from markupsafe import Markup

    return Markup("<code>{}</code> {} <span class=\"muted\">output {}, parameters {}</span>"
                  ).format(_tail(row) or row["type"], row["type"] if row["name"] else "",
                           _shape_text(row), _count_text(row))


def html(result):
    """The module tree folded as a file browser folds folders (``<details>``, the model's own
    children shown), then the totals: the text report's table, for a page."""
    from markupsafe import Markup

    rows, parts, depth = result["rows"], [Markup('<div class="tree">')], []
    for i, row in enumerate(rows):
        while depth and depth[-1] >= row["depth"]:
            parts.append(Markup("</details>"))
            depth.pop()
        if i + 1 < len(rows) and rows[i + 1]["depth"] > row["depth"]:
            parts.append(Markup("<details{}><summary>{}</summary>").format(
                Markup(" open") if row["depth"] == 0 else "", _module_line(row)))
            depth.append(row["depth"])
        else:
            parts.append(Markup('<div class="leaf">{}</div>').format(_module_line(row)))
    parts.extend(Markup("</details>") for _ in depth)
    parts.append(Markup("</div><pre>{}</pre>").format("\n".join(_totals(result))))
    return Markup("").join(parts)


@hookimpl
def explorer_analyses():
    return [Analysis(
        name="summary", run=summary, render=render, needs_weights=False, figures=figures,
        html=html,
        description="The module tree with output shapes and parameter counts (like torchinfo).",
        params=(Param("depth", int, 3, "how deep the tree is listed (0: the model only)", min=0),
                Param("seq_len", int, 8, "tokens in the (1, seq_len) input (0: the context "
                      "length; capped at it)", min=0)),
    )]
