"""Parameter counts: total, trainable, by component kind, per block, and with the head tied."""

from explorer import Analysis, hookimpl


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
    model = ctx.shape_model()
    kinds = _kind_of(model)
    by_kind = {k: 0 for k in ("embedding", "positional", "attention", "ffn", "norm", "output_head")}
    per_block = [{} for _ in model.trf_blocks]
    total = trainable = 0
    for name, p in unique_parameters(model):
        n = p.numel()
        total += n
        trainable += n if p.requires_grad else 0
        kind = kinds.get(name, "other")
        by_kind[kind] = by_kind.get(kind, 0) + n
        if name.startswith("trf_blocks."):
            block = per_block[int(name.split(".")[1])]
            block[kind] = block.get(kind, 0) + n
    for block in per_block:
        block["total"] = sum(block.values())
    head = model.out_head.weight
    tied = head is model.tok_emb.weight
    return {
        "total": total,
        "trainable": trainable,
        "by_kind": by_kind,
        "per_block": per_block,
        "head_tied": tied,
        # What the model would have with the head tied to the embedding (the book's 124M figure).
        "with_tied_head": total if tied else total - head.numel(),
    }


def render(result):
    lines = [f"total            {result['total']:>15,}",
             f"trainable        {result['trainable']:>15,}",
             f"with tied head   {result['with_tied_head']:>15,}"
             + ("  (the head is tied)" if result["head_tied"] else "")]
    lines.append("by kind:")
    for kind, n in result["by_kind"].items():
        share = n / result["total"] if result["total"] else 0
        lines.append(f"  {kind:<14} {n:>15,}  {share:6.1%}")
    blocks = result["per_block"]
    if blocks:
        same = all(b == blocks[0] for b in blocks)
        label = f"each of {len(blocks)} blocks" if same else "block 0"
        parts = ", ".join(f"{k} {v:,}" for k, v in blocks[0].items())
        lines.append(f"{label}: {parts}")
        if not same:
            lines.extend(f"block {i}: {b['total']:,}" for i, b in enumerate(blocks[1:], 1))
    return "\n".join(lines)


@hookimpl
def explorer_analyses():
    return [Analysis(name="params", run=count, render=render, needs_weights=False,
                     description="Parameter counts: total, trainable, by kind, per block, tied head.")]
