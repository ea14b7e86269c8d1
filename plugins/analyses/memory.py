"""Memory footprint of the weights, and of training with AdamW."""

from explorer import Analysis, hookimpl

from .params import unique_parameters

MB = 2**20  # the book's MB


def footprint(ctx):
    model = ctx.shape_model()
    n = sum(p.numel() for _, p in unique_parameters(model))
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    weights = {"fp32": 4 * n, "fp16": 2 * n, "bf16": 2 * n}
    # AdamW keeps two moments per parameter (exp_avg, exp_avg_sq), in fp32.
    training = {
        "fp32": {"weights": 4 * n, "gradients": 4 * n, "optimizer": 8 * n},
        # bf16 mixed precision: bf16 working weights and gradients, an fp32 master copy.
        "bf16_mixed": {"weights": 2 * n, "master_weights": 4 * n, "gradients": 2 * n,
                       "optimizer": 8 * n},
    }
    for parts in training.values():
        parts["total"] = sum(parts.values())
    return {
        "parameters": n,
        "weights_bytes": weights,
        "weights_mb": {k: round(v / MB, 2) for k, v in weights.items()},
        "buffers_bytes": buffers,
        "training_bytes": training,
        "training_mb": {k: round(v["total"] / MB, 2) for k, v in training.items()},
        "conventions": "MB = 2**20 bytes; AdamW moments in fp32; bf16_mixed keeps an fp32 "
                       "master copy and bf16 gradients (16 bytes/param, like fp32)",
    }


def render(result):
    w, wm, t = result["weights_bytes"], result["weights_mb"], result["training_bytes"]
    lines = [f"weights  fp32 {wm['fp32']:>12,.2f} MB  ({w['fp32']:,} bytes)",
             f"         bf16 {wm['bf16']:>12,.2f} MB  (fp16 the same)"]
    if result["buffers_bytes"]:
        lines.append(f"buffers       {result['buffers_bytes'] / MB:>12,.2f} MB  (masks; not parameters)")
    for mode, parts in t.items():
        detail = ", ".join(f"{k} {v / MB:,.0f}" for k, v in parts.items() if k != "total")
        lines.append(f"training {mode:<10} {parts['total'] / MB:>10,.2f} MB  (AdamW: {detail} MB)")
    return "\n".join(lines)


@hookimpl
def explorer_analyses():
    return [Analysis(name="memory", run=footprint, render=render, needs_weights=False,
                     description="Weight bytes at fp32/fp16/bf16 and the AdamW training footprint.")]
