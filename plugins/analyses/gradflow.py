"""Gradient flow: mean |grad| per block and per weight matrix after one language-model step."""

from explorer import Analysis, Param, hookimpl

SAMPLE_TEXT = ("Every effort moves you forward, and every day holds a new chance to learn "
               "something about the way language models work.")


def _mean_abs(grads):
    total = sum(g.abs().sum().item() for g in grads)
    return total / max(1, sum(g.numel() for g in grads))


def gradient_flow(ctx, text=SAMPLE_TEXT, train_mode=True):
    import torch  # here, not at the top: registering this plugin must not import torch
    from torch.nn import functional as F

    model = ctx.model()
    ids = ctx.encode(text)[: ctx.spec.model.context_length + 1]
    if len(ids) < 2:
        raise ValueError(f"the gradflow text needs at least 2 tokens, got {len(ids)}")
    batch = torch.tensor([ids])
    inputs, targets = batch[:, :-1], batch[:, 1:]  # (1, T): predict each next token

    was_training = model.training
    model.train(train_mode)
    torch.manual_seed(ctx.spec.seed)  # the dropout masks, when train_mode
    model.zero_grad(set_to_none=True)
    logits = model(inputs)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    loss.backward()

    blocks, matrices = [], {}
    for i, block in enumerate(model.trf_blocks):
        groups = {"all": []}
        for name, p in block.named_parameters():
            if p.grad is None or p.dim() < 2:  # weight matrices only, as the book plots
                continue
            groups["all"].append(p.grad)
            groups.setdefault(name.split(".")[0], []).append(p.grad)
            matrices[f"trf_blocks.{i}.{name}"] = p.grad.abs().mean().item()
        blocks.append({part: _mean_abs(grads) for part, grads in groups.items()})
    model.zero_grad(set_to_none=True)
    model.train(was_training)

    first, last = blocks[0]["all"], blocks[-1]["all"]
    return {
        "loss": loss.item(),
        "tokens": inputs.shape[1],
        "train_mode": train_mode,
        "per_block": blocks,
        "per_matrix": matrices,
        "first_over_last": first / last if last else None,
    }


def render(result):
    lines = [f"loss {result['loss']:.4f} on {result['tokens']} tokens "
             f"({'dropout active' if result['train_mode'] else 'eval mode'})",
             "block  mean|grad|  (attention / ffn)"]
    for i, b in enumerate(result["per_block"]):
        lines.append(f"{i:>5}  {b['all']:.3e}  ({b.get('att', 0):.3e} / {b.get('ff', 0):.3e})")
    ratio = result["first_over_last"]
    lines.append(f"first / last block: {ratio:.3g}" if ratio is not None else "first / last: n/a")
    return "\n".join(lines)


@hookimpl
def explorer_analyses():
    return [Analysis(
        name="gradflow", run=gradient_flow, render=render,
        description="One forward/backward pass of the LM loss; mean |grad| per block and matrix.",
        params=(Param("text", str, SAMPLE_TEXT, "the sample text (inputs and shifted targets)"),
                Param("train_mode", bool, True, "dropout active, as in training")),
    )]
