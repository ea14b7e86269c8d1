"""The coordinate check (Yang et al. 2022, Tensor Programs V, and microsoft/mup's README): the
size of each layer's activations over the first few AdamW steps, at several widths.

The spec is built at each width of ``widths`` (``emb_dim``; the heads, depth, base width and all
else as the spec has them) from the spec's seed, and trained ``steps`` steps on successive
batches of the training corpus; before each step (step 0: at initialisation) it records the
root mean square of the token embeddings (what the first block sees), of each block's output and
of the logits. A parametrization that scales right keeps each curve flat in width; under the
standard parametrization the activations after a step grow with the width (an Adam update of a
hidden matrix moves every output coordinate by ~ lr * width). AdamW gets the training loop's
parameter groups (:func:`explorer.model.parametrization.optimizer_groups`: μP's learning rates
when the spec says ``parametrization: mup``), without weight decay, with dropout off.
"""

from explorer import Analysis, Chart, Param, ParamError, hookimpl

from . import seq_len_within_context

DEFAULT_SEQ_LEN = 64


def coordinate_check(ctx, widths, steps, lr, batch_size, seq_len):
    import torch

    seq_len = seq_len or min(DEFAULT_SEQ_LEN, ctx.spec.model.context_length)
    batches = _batches(ctx, steps + 1, batch_size, seq_len)
    rms = [_check_width(ctx, width, batches, lr) for width in widths]
    config = ctx.spec.model
    return {
        "parametrization": config.parametrization,
        "base_width": config.base_width if config.parametrization == "mup" else None,
        "widths": list(widths), "steps": steps, "lr": lr,
        "batch_size": batch_size, "seq_len": seq_len,
        "layers": ["embedding", *(f"block {i}" for i in range(config.n_layers)), "logits"],
        # rms[w][t][l]: width widths[w], before step t + 1 (t = 0: at initialisation), layer l
        "rms": rms,
        "threads": torch.get_num_threads(),
    }


def _batches(ctx, count, batch_size, seq_len):
    """``count`` batches of (inputs, targets), each ``batch_size`` consecutive windows of the
    default corpus's start: every width sees the same tokens."""
    import torch

    from explorer.training.corpus import load_corpus

    needed = count * batch_size * (seq_len + 1)
    text, _ = load_corpus()
    ids = []
    for start in range(0, len(text), 4 * needed):  # tokens are at least a character each
        ids += ctx.encode(text[start:start + 4 * needed])
        if len(ids) >= needed:
            break
    ids = torch.tensor(ids[:needed], device=ctx.device).view(count, batch_size, seq_len + 1)
    return [(b[:, :-1], b[:, 1:]) for b in ids]


def _check_width(ctx, width, batches, lr):
    """RMS per step and layer of the spec at ``width``."""
    from torch.nn import functional as F

    from explorer.model.gpt import build_model, mup_roles
    from explorer.model.parametrization import is_mup, optimizer_groups, with_width
    from explorer.training.optimizers import adamw

    spec = with_width(ctx.spec, width)
    model = build_model(spec).to(ctx.device)
    roles = mup_roles(model, spec) if is_mup(spec.model) else None
    optimizer = adamw(optimizer_groups(model, spec.model, 0.0, roles), lr, 0.0)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    seen = []

    def record(module, args, output):
        seen.append(_rms(output))

    hooks = [model.trf_blocks[0].register_forward_pre_hook(
        lambda module, args: seen.append(_rms(args[0])))]
    hooks += [block.register_forward_hook(record) for block in model.trf_blocks]
    per_step = []
    try:
        with ctx.mode(model, False):
            for step, (inputs, targets) in enumerate(batches):
                seen.clear()
                optimizer.zero_grad(set_to_none=True)
                with ctx.autocast():
                    logits = model(inputs)  # (B, T, V)
                per_step.append([*seen, _rms(logits)])
                if step == len(batches) - 1:
                    break  # the last batch is only measured
                F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten()).backward()
                optimizer.step()
    finally:
        for hook in hooks:
            hook.remove()
    return per_step


def _rms(x):
    return x.detach().float().pow(2).mean().sqrt().item()


def ratios(result, step=-1):
    """Per layer: its RMS at the widest width over that at the narrowest, at ``step`` (default:
    after the last)."""
    rms = result["rms"]
    return {layer: rms[-1][step][i] / rms[0][step][i] for i, layer in enumerate(result["layers"])}


def render(result):
    widths = result["widths"]
    how = (f"μP from base width {result['base_width']}" if result["parametrization"] == "mup"
           else "standard parametrization")
    lines = [f"{how}: RMS of each layer's activations on {result['batch_size']} x "
             f"{result['seq_len']} tokens, AdamW lr {result['lr']:g}",
             f"{'layer':<10}" + "".join(f"{'w=' + str(w):>10}" for w in widths)
             + f"{'ratio':>8}"]
    for step in (0, result["steps"]):
        lines.append(f"{'at initialisation' if step == 0 else f'after {step} steps'}:")
        ratio = ratios(result, step)
        for i, layer in enumerate(result["layers"]):
            lines.append(f"{layer:<10}" + "".join(f"{r[step][i]:>10.3g}" for r in result["rms"])
                         + f"{ratio[layer]:>8.2f}")
    lines.append(f"ratio: widest ({widths[-1]}) over narrowest ({widths[0]}); flat in width "
                 f"(near 1) is what μP promises")
    return "\n".join(lines)


def figures(result):
    """The widest over the narrowest width's RMS after the last step: the last block's and the
    logits'."""
    ratio = ratios(result)
    return {"last_block_ratio": ratio[result["layers"][-2]], "logits_ratio": ratio["logits"]}


def draw_chart(fig, series):
    """RMS against width (log-log), one line per layer, a panel per step shown (at
    initialisation and after the last step), a row per spec: flat lines are μP's promise."""
    from explorer.analysis.plots import WIDTH, legend_below, log_floor, log_lines, series_style

    steps = [0, max(r["steps"] for _, r in series)]
    fig.set_size_inches(WIDTH, 2.6 * len(series) + 0.6)
    axes = fig.subplots(len(series), len(steps), sharex=True, squeeze=False)
    for row, (label, result) in zip(axes, series):
        shown = _layers_shown(result["layers"])
        floor = log_floor([v for per_step in result["rms"] for v in per_step[-1]])
        for ax, step in zip(row, steps):
            at = min(step, result["steps"])
            log_lines(ax, [(layer, result["widths"], [r[at][i] for r in result["rms"]],
                            series_style(k)) for k, (i, layer) in enumerate(shown)], floor)
            ax.set_xscale("log", base=2)
            ax.set_title(f"{label}: " + ("at init" if at == 0 else f"after {at} steps"),
                         fontsize=10)
            ax.set_xlabel("width (emb_dim)")
            ax.grid(True, which="both", alpha=0.3)
        row[0].set_ylabel("RMS of activations")
    legend_below(fig)


def _layers_shown(layers):
    """The embedding, at most three blocks (first, middle, last) and the logits: a legend that
    fits under a chart whatever the depth."""
    blocks = [i for i, name in enumerate(layers) if name.startswith("block")]
    keep = sorted({blocks[0], blocks[len(blocks) // 2], blocks[-1]}) if blocks else []
    return [(i, layers[i]) for i in [0, *keep, len(layers) - 1]]


def options_are_valid(config, options):
    """At least two widths, increasing, each a multiple of the heads; and seq_len within the
    context."""
    seq_len_within_context(config, options)
    widths = options["widths"]
    if len(widths) < 2 or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0
                                  for w in widths) or sorted(set(widths)) != widths:
        raise ParamError("widths", f"expected two or more increasing widths, got {widths!r}",
                         "e.g. [64, 128, 256, 512]")
    odd = [w for w in widths if w % config.n_heads]
    if odd:
        raise ParamError("widths", f"{odd[0]} is not a multiple of n_heads {config.n_heads}",
                         f"multiples of {config.n_heads}, e.g. [64, 128, 256, 512]")


@hookimpl
def explorer_analyses():
    return [Analysis(
        name="coordcheck", run=coordinate_check, render=render, figures=figures,
        default=False, check=options_are_valid,
        charts=(Chart("coordcheck", "Coordinate check: activation RMS against width",
                      draw_chart),),
        description="Yang et al.'s coordinate check: the RMS of each layer's activations over "
                    "the first AdamW steps at several widths (flat under μP).",
        params=(Param("widths", list, [64, 128, 256, 512], "the emb_dim values to build the "
                      "spec at (increasing; multiples of n_heads)"),
                Param("steps", int, 3, "AdamW steps (RMS measured before each and after the "
                      "last)", min=1, max=100),
                Param("lr", float, 1e-2, "AdamW's learning rate (μP scales it per parameter "
                      "group)", min=0, exclusive_min=True),
                Param("batch_size", int, 4, "sequences per step", min=1),
                Param("seq_len", int, 0, "tokens per sequence (0: 64, or the context length "
                      "if shorter)", min=0)),
    )]
