"""Gradient flow: mean |grad| per block and per weight matrix, at initialization and after a few
optimizer steps on the same sample batch.

Each block's figures are split by the kind of the sublayer a weight belongs to (``attention``,
``ffn``; the tag ``BuildContext.make`` gives every component), so a plugin block gets them
whatever it names its sublayers.

Memory: the steps train the context's shared model in place (the context builds it again from
the seed for the analyses after this one, rather than this one keeping a copy), and each
parameter takes its AdamW step as soon as its gradient is complete, which is then freed
(:func:`explorer.training.optimizers.adamw_in_backward`): weights, AdamW moments and one gradient at a
time, instead of two copies of the weights with every gradient beside the moments. The numbers
are those of plain AdamW steps on a copy (tests/analysis/test_deep_analyses.py)."""

from explorer import Analysis, Chart, Param, hookimpl

SAMPLE_TEXT = ("Every effort moves you forward, and every day holds a new chance to learn "
               "something about the way language models work.")


def _mean_abs(grads):
    total = sum(g.abs().sum().item() for g in grads)
    return total / max(1, sum(g.numel() for g in grads))


def _lm_loss_backward(ctx, model, inputs, targets, seed):
    """One forward/backward of the next-token loss; the dropout masks seeded with ``seed``."""
    import torch
    from torch.nn import functional as F

    from explorer.measure.numerics import nonfinite_report

    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    with ctx.autocast():
        logits = model(inputs)  # (1, T, V)
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
    loss.backward()
    return loss.item(), nonfinite_report(model, inputs, logits, loss)


def _block_grads(model):
    """Per block: mean |grad| over all weight matrices and per sublayer kind (attention, ffn),
    the sublayers found by the kind the registry tagged them with, not by attribute name."""
    from explorer.model.kinds import parameter_sublayer_kinds

    blocks, matrices = [], {}
    for i, block in enumerate(model.trf_blocks):
        kinds = parameter_sublayer_kinds(block)
        groups = {"all": []}
        for name, p in block.named_parameters():
            if p.grad is None or p.dim() < 2:  # weight matrices only, as the book plots
                continue
            groups["all"].append(p.grad)
            groups.setdefault(kinds[name] or "other", []).append(p.grad)
            matrices[f"trf_blocks.{i}.{name}"] = p.grad.abs().mean().item()
        blocks.append({part: _mean_abs(grads) for part, grads in groups.items()})
    return blocks, matrices


def _expert_grads(model):
    """Per mixture of experts (a module exposing its routed experts as ``experts``, an
    nn.ModuleList: explorer.model.contracts point 8): the mean |grad| of each expert's weight
    matrices, None for an expert no token was routed to (it got no gradient)."""
    from torch import nn

    found = {}
    for name, module in model.named_modules():
        experts = getattr(module, "experts", None)
        if isinstance(experts, nn.ModuleList):
            found[name] = [_mean_abs(grads) if grads else None for grads in (
                [p.grad for p in expert.parameters() if p.grad is not None and p.dim() >= 2]
                for expert in experts)]
    return found


def _first_over_last(blocks):
    first, last = blocks[0]["all"], blocks[-1]["all"]
    return first / last if last else None


def _need(ctx, tokens, steps):
    """The shared model throughout; then the larger of measuring (every gradient) and stepping
    (the AdamW moments and the largest gradient, the only one alive at a time), each with one
    forward's activations and the logits with their gradients."""
    from explorer.measure.resources import logits_bytes_per_token, parameter_bytes, weight_bytes
    from explorer.measure.resources import Need, Part

    model = ctx.compact_model()  # the stack's figures, without building every block on meta
    params = parameter_bytes(model)
    forward = (Part("activations", ctx.activations_per_sequence(tokens),
                    note=f"at batch 1 x {tokens}"),
               Part("logits and their gradients",
                    3 * logits_bytes_per_token(ctx.spec, model) * tokens))
    phases = [(Part("gradients", params), *forward)]
    if steps:
        largest = max((p.numel() * p.element_size() for p in model.parameters()), default=0)
        phases.append((Part("AdamW", 2 * params), Part("the largest gradient", largest), *forward))
    return Need("gradflow", (Part("weights", weight_bytes(model)),),
                "lower analyses.gradflow.steps to 0 (no optimizer), or shorten "
                "analyses.gradflow.text", tuple(phases))


def gradient_flow(ctx, text, train_mode, steps, lr):
    import torch  # here, not at the top: registering this plugin must not import torch

    if steps < 0:
        raise ValueError(f"gradflow: steps must be >= 0, got {steps}")
    ids = ctx.encode(text)[: ctx.spec.model.context_length + 1]
    if len(ids) < 2:
        raise ValueError(f"the gradflow text needs at least 2 tokens, got {len(ids)}")
    ctx.require(_need(ctx, len(ids) - 1, steps))
    model = ctx.model()
    batch = torch.tensor([ids], device=ctx.device)
    inputs, targets = batch[:, :-1], batch[:, 1:]  # (1, T): predict each next token
    seed = ctx.spec.seed

    with ctx.mode(model, train_mode):
        loss, fault = _lm_loss_backward(ctx, model, inputs, targets, seed)
        blocks, matrices = _block_grads(model)
        experts = _expert_grads(model)
        model.zero_grad(set_to_none=True)
    del model  # the steps below may take the shared model over
    result = {
        "loss": loss,
        "tokens": inputs.shape[1],
        "train_mode": train_mode,
        "per_block": blocks,
        "per_matrix": matrices,
        "first_over_last": _first_over_last(blocks),
    }
    if experts:
        result["per_expert"] = experts
    if fault:
        result["nonfinite"] = fault  # named, not hidden; the runner lists it under warnings
        return result
    if steps:
        from explorer.training.optimizers import adamw_in_backward

        # The shared model, trained in place: the context builds the initial one again for
        # the analyses after this one.
        with ctx.model_to_change() as trained:
            trained.train(train_mode)
            with adamw_in_backward(trained, lr, weight_decay=0.1):
                losses = [_lm_loss_backward(ctx, trained, inputs, targets, seed)[0]
                          for _ in range(steps)]
            loss_after, fault = _lm_loss_backward(ctx, trained, inputs, targets, seed)
            after, _ = _block_grads(trained)
            after_experts = _expert_grads(trained)
            trained.zero_grad(set_to_none=True)
        result["after_steps"] = {
            "steps": steps, "lr": lr, "losses": losses, "loss": loss_after,
            "per_block": after, "first_over_last": _first_over_last(after),
        }
        if after_experts:
            result["after_steps"]["per_expert"] = after_experts
        if fault:
            result["nonfinite"] = {**fault, "after_steps": steps}
    return result


def _table(blocks):
    lines = ["block  mean|grad|  (attention / ffn)"]
    for i, b in enumerate(blocks):
        lines.append(f"{i:>5}  {b['all']:.3e}  ({_grad(b, 'attention')} / {_grad(b, 'ffn')})")
    return lines


def _expert_lines(per_expert):
    """One line per mixture of experts: each expert's mean |grad| (n/a: no token reached it)."""
    return [f"experts of {name}: " + " ".join(f"{g:.2e}" if g is not None else "n/a"
                                             for g in grads)
            for name, grads in (per_expert or {}).items()]


def _grad(block, kind):
    """A block's figure for one sublayer kind, or n/a when the block has no such sublayer."""
    return f"{block[kind]:.3e}" if kind in block else "n/a"


def _ratio(ratio):
    return f"first / last block: {ratio:.3g}" if ratio is not None else "first / last: n/a"


def render(result):
    lines = [f"at initialization: loss {result['loss']:.4f} on {result['tokens']} tokens "
             f"({'dropout active' if result['train_mode'] else 'eval mode'})"]
    lines += _table(result["per_block"])
    lines += _expert_lines(result.get("per_expert"))
    lines.append(_ratio(result["first_over_last"]))
    after = result.get("after_steps")
    if after:
        lines.append(f"after {after['steps']} AdamW steps (lr {after['lr']:g}) on the same batch: "
                     f"loss {after['loss']:.4f}")
        lines += _table(after["per_block"])
        lines += _expert_lines(after.get("per_expert"))
        lines.append(_ratio(after["first_over_last"]))
    return "\n".join(lines)


def figures(result):
    """At initialization and ``after`` the AdamW steps: the loss and the first/last block ratio."""
    out = {"loss": result["loss"], "first_over_last": result["first_over_last"]}
    after = result.get("after_steps")
    if after:
        out.update({"after.loss": after["loss"], "after.first_over_last": after["first_over_last"]})
    return out


def draw_chart(fig, series):
    """Mean |grad| per block, one line per spec, log scale (the book's section 4.4 picture): at
    initialization, and after the AdamW steps (where a model without shortcuts collapses). Each
    spec has its own colour, line style and marker; the legend sits below the panels."""
    from matplotlib.ticker import MaxNLocator

    from explorer.analysis.plots import WIDTH, legend_below, log_floor, log_lines, series_style

    panels = [("at initialization", [r["per_block"] for _, r in series])]
    if any(r.get("after_steps") for _, r in series):
        steps = sorted({r["after_steps"]["steps"] for _, r in series if r.get("after_steps")})
        panels.append((f"after {'/'.join(map(str, steps))} AdamW steps",
                       [r["after_steps"]["per_block"] if r.get("after_steps") else None
                        for _, r in series]))
    floor = log_floor([b["all"] for _, blocks in panels for bs in blocks if bs for b in bs])
    fig.set_size_inches(WIDTH, 3.4)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (title, per_spec) in zip(axes, panels):
        log_lines(ax, [(label, range(len(blocks)), [b["all"] for b in blocks], series_style(i))
                       for i, ((label, _), blocks) in enumerate(zip(series, per_spec)) if blocks],
                  floor)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("block")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("mean |grad| of weight matrices")
    legend_below(fig)


@hookimpl
def explorer_analyses():
    return [Analysis(
        name="gradflow", run=gradient_flow, render=render, figures=figures,
        charts=(Chart("gradflow", "Gradient flow per block (one LM step on the sample text)",
                      draw_chart),),
        description="Mean |grad| per block (attention and FFN apart) of the LM loss, at "
                    "initialization and after a few AdamW steps.",
        params=(Param("text", str, SAMPLE_TEXT, "the sample text (inputs and shifted targets)"),
                Param("train_mode", bool, True, "dropout active, as in training"),
                Param("steps", int, 3, "AdamW steps on the sample batch before measuring again "
                      "(on a copy of the model; 0: only at initialization)", min=0),
                Param("lr", float, 1e-3, "the AdamW learning rate (weight decay 0.1, as the book)",
                      min=0, exclusive_min=True)),
    )]
