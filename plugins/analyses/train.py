"""A short, seeded training run: the honest way to compare ablations.

The corpus is the documentation text every Python installation ships (the standard library's
``pydoc_data.topics``, about 465,000 characters) or a user's text file. It is tokenized with the
spec's tokenizer and split 90/10 by position into train and validation. AdamW trains a copy of
the model on random windows of the train split; the loss on fixed windows of both splits is
recorded every ``eval_every`` steps. The unigram baseline is the loss of a model that ignores
context: the cross-entropy of the validation targets under the train split's token frequencies
(add-one smoothed over the vocabulary). A model below it has learned more than token frequencies.
"""

import dataclasses
import math
from pathlib import Path

from explorer import Analysis, Chart, ExplorerError, Param, hookimpl

from . import seq_len_within_context

TRAIN_FRACTION = 0.9
EVAL_CHUNK = 64  # windows per forward pass when evaluating
ONE_THREAD_BELOW = 5_000_000  # parameters: below this, per-op threading overhead dominates


def load_corpus(path=""):
    """The corpus text and a line saying where it came from."""
    if not path:
        import platform

        import pydoc_data.topics

        topics = pydoc_data.topics.topics
        text = "\n\n".join(topics[key] for key in sorted(topics))
        return text, f"pydoc_data.topics (Python {platform.python_version()} documentation)"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExplorerError(f"train: corpus {path}: no such file") from None
    except IsADirectoryError:
        raise ExplorerError(f"train: corpus {path}: is a directory, not a text file") from None
    except UnicodeDecodeError as exc:
        raise ExplorerError(f"train: corpus {path}: not UTF-8 text ({exc.reason} at byte "
                            f"{exc.start})") from None
    except OSError as exc:
        raise ExplorerError(f"train: corpus {path}: cannot read ({exc.strerror})") from None
    return text, str(path)


def _windows(ids, seq_len, max_tokens):
    """Non-overlapping (inputs, targets) windows from the start of ``ids``: (n, T) each."""
    usable = ids[: max_tokens + 1] if max_tokens else ids
    n = (len(usable) - 1) // seq_len
    return usable[: n * seq_len].view(n, seq_len), usable[1: n * seq_len + 1].view(n, seq_len)


def _eval_loss(ctx, model, inputs, targets):
    """Mean next-token cross-entropy over every target in the windows (eval mode, no grad)."""
    import torch
    from torch.nn import functional as F

    total = 0.0
    with ctx.mode(model, train=False), torch.no_grad():
        for i in range(0, len(inputs), EVAL_CHUNK):
            logits = model(inputs[i: i + EVAL_CHUNK])  # (n, T, V)
            total += F.cross_entropy(logits.flatten(0, 1), targets[i: i + EVAL_CHUNK].flatten(),
                                     reduction="sum").item()
    return total / targets.numel()


def unigram_baseline(train_ids, targets, vocab_size):
    """Cross-entropy (nats) of ``targets`` under add-one smoothed train-split unigram frequencies."""
    import torch

    counts = torch.bincount(train_ids, minlength=vocab_size).double()
    log_p = torch.log((counts + 1) / (len(train_ids) + vocab_size))
    return -log_p[targets.flatten()].mean().item()


def train(ctx, steps, batch_size, seq_len, lr, weight_decay, eval_every, eval_tokens, corpus,
          threads):
    import torch

    if threads <= 0:
        n = sum(p.numel() for p in ctx.shape_model().parameters())
        threads = 1 if n < ONE_THREAD_BELOW else torch.get_num_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = _train(ctx, steps, batch_size, seq_len, lr, weight_decay, eval_every,
                        eval_tokens, corpus)
    finally:
        torch.set_num_threads(before)
    result["threads"] = threads
    return result


def _need(ctx, batch_size, seq_len, eval_windows):
    """The shared model and the trained copy, its gradients and AdamW moments, and the larger
    of a training step (activations, logits and their gradients) and an evaluation pass (the
    last step's logits, still referenced, beside a chunk's logits and log-probabilities)."""
    from explorer.analysis import logits_bytes_per_token
    from explorer.resources import Part

    need = ctx.training_need("train", "lower analyses.train.batch_size or analyses.train.seq_len",
                             batch_size, seq_len, copies=2)
    per_token = logits_bytes_per_token(ctx.spec, ctx.shape_model())
    chunk = min(EVAL_CHUNK, eval_windows)
    evaluating = (Part("the last step's logits", per_token * batch_size * seq_len),
                  Part("evaluation logits and log-probabilities", 2 * per_token * chunk * seq_len,
                       note=f"at {chunk} x {seq_len}"))
    need = dataclasses.replace(need, phases=(*need.phases, evaluating))
    if need.peak_phase() is evaluating:  # fewer windows evaluated at once, or shorter ones
        need = dataclasses.replace(need, lower="lower analyses.train.eval_tokens or "
                                               "analyses.train.seq_len")
    return need


def _train(ctx, steps, batch_size, seq_len, lr, weight_decay, eval_every, eval_tokens, corpus):
    import copy

    import torch
    from torch.nn import functional as F

    from explorer.contracts import aux_loss, stats

    cfg, seed = ctx.spec.model, ctx.spec.seed
    seq_len = seq_len or cfg.context_length
    for name, value, low in (("steps", steps, 1), ("batch_size", batch_size, 1),
                             ("eval_every", eval_every, 1), ("eval_tokens", eval_tokens, 0)):
        if value < low:
            raise ValueError(f"train: {name} must be >= {low}, got {value}")
    if not 1 <= seq_len <= cfg.context_length:
        raise ValueError(f"train: seq_len {seq_len} must be in 1..{cfg.context_length} "
                         f"(the context length); 0 means the context length")

    text, source = load_corpus(corpus)
    tok = ctx.tokenizer()
    ids = torch.tensor(tok.encode(text, allowed_special={"<|endoftext|>"}), dtype=torch.long)
    if len(ids) and int(ids.max()) >= cfg.vocab_size:
        raise ExplorerError(f"train: model.vocab_size {cfg.vocab_size} is too small for the "
                            f"{ctx.spec.tokenizer} tokenizer (token id {int(ids.max())} in the "
                            f"corpus); use vocab_size >= {tok.n_vocab}")
    split = int(TRAIN_FRACTION * len(ids))
    train_ids, val_ids = ids[:split], ids[split:]
    if len(train_ids) <= seq_len or len(val_ids) <= seq_len:
        raise ExplorerError(f"train: corpus {source} has {len(ids):,} tokens: its train "
                            f"({len(train_ids):,}) and validation ({len(val_ids):,}) splits each "
                            f"need more than seq_len {seq_len} tokens")
    val_x, val_y = _windows(val_ids, seq_len, eval_tokens)
    train_x, train_y = _windows(train_ids, seq_len, eval_tokens)
    ctx.require(_need(ctx, batch_size, seq_len, max(len(train_x), len(val_x))))
    baseline = unigram_baseline(train_ids, val_y, cfg.vocab_size)

    # A copy: the other analyses share ctx.model() and must see the initial weights.
    model = copy.deepcopy(ctx.model()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    batches = torch.Generator().manual_seed(seed)  # which windows each step draws
    torch.manual_seed(seed)  # the dropout masks
    offsets = torch.arange(seq_len)

    def evaluate(step):
        return {"step": step, "train_loss": _eval_loss(ctx, model, train_x, train_y),
                "val_loss": _eval_loss(ctx, model, val_x, val_y)}

    curve, batch_losses, aux_losses, routing = [evaluate(0)], [], [], {}
    for step in range(1, steps + 1):
        starts = torch.randint(0, len(train_ids) - seq_len, (batch_size,), generator=batches)
        inputs = train_ids[starts[:, None] + offsets]  # (B, T)
        targets = train_ids[starts[:, None] + offsets + 1]
        optimizer.zero_grad(set_to_none=True)
        logits = model(inputs)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        aux = aux_loss(model)  # e.g. an MoE's load-balancing and z-losses, coefficients applied
        (loss if aux is None else loss + aux).backward()
        optimizer.step()
        batch_losses.append(loss.item())
        if aux is not None:
            aux_losses.append(aux.item())
        if step % eval_every == 0 or step == steps:
            routing = stats(model)  # this step's training batch: evaluating runs other forwards
            point = evaluate(step)
            if aux is not None:
                point["aux_loss"] = aux_losses[-1]
            if routing:
                point["stats"] = routing
            curve.append(point)
    del model, optimizer

    final = curve[-1]["val_loss"]
    return {
        "corpus": {"source": source, "characters": len(text), "tokens": len(ids),
                   "tokenizer": ctx.spec.tokenizer, "train_tokens": len(train_ids),
                   "val_tokens": len(val_ids), "eval_tokens": {"train": train_y.numel(),
                                                               "val": val_y.numel()}},
        "steps": steps, "batch_size": batch_size, "seq_len": seq_len, "lr": lr,
        "weight_decay": weight_decay, "tokens_seen": steps * batch_size * seq_len,
        "curve": curve,
        "batch_losses": batch_losses,
        # Auxiliary losses added to each step's loss (modules' explorer_aux_loss(), e.g. an
        # MoE's), and the last step's module statistics (an MoE's per-expert load).
        "aux_losses": aux_losses,
        "stats": routing,
        "final_val_loss": final,
        "final_val_perplexity": math.exp(final),
        "unigram_baseline": baseline,
        "unigram_perplexity": math.exp(baseline),
        "below_unigram": final < baseline,
        "conventions": (
            "losses are mean next-token cross-entropy in nats; the corpus is split 90/10 by "
            "position; curve losses are on fixed non-overlapping windows of the first "
            "eval_tokens tokens of each split (eval mode); batch_losses are the training "
            "batches' cross-entropy (train mode); aux_losses the auxiliary losses added to it "
            "(explorer_aux_loss of each module: an MoE's load balancing and router z-loss, "
            "coefficients applied); a curve point's aux_loss and stats (per-expert load: each "
            "expert's share of the token assignments) are its step's training batch's; the "
            "unigram baseline is scored on the same validation targets under add-one smoothed "
            "train-split frequencies; AdamW on a copy of the model, seeded with the spec's seed."),
    }


def render(result):
    c = result["corpus"]
    lines = [f"corpus: {c['source']}: {c['characters']:,} characters, {c['tokens']:,} "
             f"{c['tokenizer']} tokens ({c['train_tokens']:,} train / {c['val_tokens']:,} "
             f"validation)",
             f"AdamW lr {result['lr']:g}, weight decay {result['weight_decay']:g}: "
             f"{result['steps']} steps of {result['batch_size']} x {result['seq_len']} tokens "
             f"({result['tokens_seen']:,} tokens seen)",
             " step  train loss  val loss" + ("  aux loss" if result["aux_losses"] else "")]
    lines.extend(f"{p['step']:>5}  {p['train_loss']:>10.4f}  {p['val_loss']:>8.4f}"
                 + (f"  {p['aux_loss']:>8.4f}" if "aux_loss" in p else "")
                 for p in result["curve"])
    lines += _load_lines(result["stats"], result["steps"])
    verdict = "below" if result["below_unigram"] else "NOT below"
    lines.append(f"final validation loss {result['final_val_loss']:.4f} (perplexity "
                 f"{result['final_val_perplexity']:.2f}), {verdict} the unigram baseline "
                 f"{result['unigram_baseline']:.4f} (perplexity {result['unigram_perplexity']:.2f})")
    return "\n".join(lines)


def _load_lines(module_stats, step):
    """Each module's expert load at the last step, one line per module: shares that sum to 1."""
    loads = {name: found["expert_load"] for name, found in module_stats.items()
             if "expert_load" in found}
    if not loads:
        return []
    lines = [f"expert load at step {step} (each expert's share of the token assignments; "
             "balanced: 1 / n_experts each):"]
    for name, load in loads.items():
        spread = f"max/min {max(load) / min(load):.2f}" if min(load) else "an expert unused"
        lines.append(f"  {name}: {' '.join(f'{share:.3f}' for share in load)}  ({spread})")
    return lines


def figures(result):
    return {"final_train_loss": result["curve"][-1]["train_loss"],
            "final_val_loss": result["final_val_loss"],
            "final_val_perplexity": result["final_val_perplexity"],
            "unigram_baseline": result["unigram_baseline"],
            "below_unigram": result["below_unigram"]}


def draw_chart(fig, series):
    """Training (solid) and validation (dashed) loss per spec, one colour each; every distinct
    unigram baseline drawn once (dotted), labelled with the specs that share it."""
    from explorer.plots import colour

    ax = fig.subplots()
    baselines = {}  # baseline -> indices of the specs that have it
    for i, (label, result) in enumerate(series):
        steps = [point["step"] for point in result["curve"]]
        ax.plot(steps, [p["train_loss"] for p in result["curve"]], color=colour(i), alpha=0.6,
                label=f"{label} train")
        ax.plot(steps, [p["val_loss"] for p in result["curve"]], color=colour(i),
                linestyle="--", label=f"{label} validation")
        baselines.setdefault(result["unigram_baseline"], []).append(i)
    for baseline, users in baselines.items():
        shared = len(users) > 1
        who = "all specs" if len(users) == len(series) > 1 else ", ".join(series[i][0] for i in users)
        ax.axhline(baseline, color="grey" if shared else colour(users[0]), linestyle=":",
                   linewidth=1.2, label=f"unigram baseline {baseline:.4g} ({who})")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")


@hookimpl
def explorer_analyses():
    return [Analysis(
        name="train", run=train, render=render, default=False, figures=figures,
        charts=(Chart("loss", "Training probe: loss per step", draw_chart),),
        description="A short seeded AdamW run on a text corpus: train/validation loss curves, "
                    "final perplexity, and the unigram baseline to beat.",
        params=(Param("steps", int, 200, "optimizer steps", min=1),
                Param("batch_size", int, 8, "sequences per step", min=1),
                Param("seq_len", int, 0, "tokens per sequence (0: the context length)", min=0),
                Param("lr", float, 1e-3, "AdamW learning rate", min=0, exclusive_min=True),
                Param("weight_decay", float, 0.1, "AdamW weight decay (the book's 0.1)", min=0),
                Param("eval_every", int, 50, "steps between evaluations", min=1),
                Param("eval_tokens", int, 16384, "tokens of each split the curve is measured "
                      "on (0: the whole split)", min=0),
                Param("corpus", str, "", "a UTF-8 text file (default: the standard library's "
                      "pydoc_data.topics)"),
                Param("threads", int, 0, "CPU threads while training (0: one below 5M "
                      "parameters, where threading overhead dominates; else torch's setting)",
                      min=0)),
        check=seq_len_within_context,
    )]
