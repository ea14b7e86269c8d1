"""Training on a task (:mod:`explorer.training.tasks`): the corpus run's loop, optimizer,
schedule, precision, divergence checks and clocks (:class:`explorer.training.loop._Run`), with
the task's batches and the task's evaluation (:class:`TaskData`). The loop imports this module,
never the other way round.

Evaluation, at the same steps as a corpus run's: the task's metrics (loss on the target
positions, token accuracy, exact match per sequence) on two fixed sets of ``eval_tokens //
seq_len`` sequences, the first of the training data and a validation set from a stream of its
own. The forwards run in eval mode under ``torch.inference_mode``, as many sequences at once as
the training step's logits hold; only per-position losses and arg-max predictions are kept, so
the peak does not grow with the set.

``train.eval_lengths``: after training, the task's validation set is made again at each length
by the task's ``at_length`` (a recall task's gap grows, a copy's region, an induction block;
:mod:`explorer.training.tasks`), as many sequences from the same seed, and scored the same
way (:func:`task_scores_at_lengths`). At the task's own length it is the validation set
itself, so that cell is the final accuracy.
"""

import contextlib
import math
import time

import torch
from torch.nn import functional as F

from explorer.measure.resources import length_windows
from explorer.training.lengths import (LengthUnavailable, evaluate_at_lengths, lengths_entry,
                                       position_limit)
from explorer.training.settings import eval_steps
from explorer.training.tasks import IGNORE, make_task, task_at_length

DEFAULT_EVAL_SEQUENCES = 256  # eval_tokens 0 ("the whole split"): a task's split is endless


def evaluate_task(model, task, inputs, targets, precision=None, windows=None):
    """The task's metrics of ``model`` on the set ``(inputs, targets)`` (eval mode, inference
    mode, ``windows`` sequences per forward)."""
    was_training = model.training
    model.eval()
    windows = windows or len(inputs)
    losses, predictions = [], []
    try:
        with torch.inference_mode():
            for i in range(0, len(inputs), windows):
                with precision() if precision else contextlib.nullcontext():
                    logits = model(inputs[i: i + windows])  # (n, T, V)
                chunk = targets[i: i + windows]
                losses.append(F.cross_entropy(logits.flatten(0, 1).float(), chunk.flatten(),
                                              ignore_index=IGNORE, reduction="none")
                              .view(chunk.shape))
                predictions.append(logits.argmax(dim=-1))
                del logits
    finally:
        model.train(was_training)
    return task.metrics(torch.cat(losses).cpu(), torch.cat(predictions).cpu(), targets.cpu())


def eval_sequences(config):
    """Sequences in each of a task run's evaluation sets: ``eval_tokens // seq_len``, at least
    one (``eval_tokens`` 0: DEFAULT_EVAL_SEQUENCES)."""
    return max(config.eval_tokens // config.seq_len, 1) if config.eval_tokens else \
        DEFAULT_EVAL_SEQUENCES


class TaskData:
    """A task's side of a run: its batch stream and its two fixed evaluation sets; the loop's
    run (:class:`explorer.training.loop._Run`) asks it for batches and evaluations."""

    def __init__(self, config, spec, seed, device):
        self.task = make_task(config.task, spec.plugin_manager)
        self.config, self.device = config, device
        n = eval_sequences(config)
        self.train_set = [t.to(device) for t in self.task.examples("train", seed, n)]
        self.val_set = [t.to(device) for t in self.task.examples("val", seed, n)]
        self.stream = self.task.batches("train", seed, config.batch_size)

    def batch(self):
        inputs, targets = next(self.stream)
        return inputs.to(self.device), targets.to(self.device)

    def evaluate(self, run, step):
        """The curve point at ``step``: the task's metrics of both sets, timed into ``run``."""
        start = time.perf_counter()
        point = {"step": step, "tokens": step * self.config.batch_size * self.config.seq_len}
        for split, (inputs, targets) in (("train", self.train_set), ("val", self.val_set)):
            found = evaluate_task(run.model, self.task, inputs, targets, run.precision,
                                  run.eval_windows)
            point.update({f"{split}_{name}": value for name, value in found.items()
                          if name != "targets"})
        run.eval_seconds += time.perf_counter() - start
        return point


def task_scores_at_lengths(run, data):
    """The ``lengths`` entry of a task run's result: the final model's validation accuracy
    (and loss, exact match) at each of ``train.eval_lengths``, on the task's validation set made
    at that length (as many sequences, the same seed), each forward holding as many tokens as
    evaluation at the training length does. A length the model cannot place, or the task
    cannot be made at, is a cell with the reason."""
    config, spec = run.config, run.spec
    start = time.perf_counter()
    limit, reason = position_limit(run.model, spec)
    name, count = config.task["name"], len(data.val_set[0])
    made = {}  # length -> the task at that length, whose metrics score it

    def make_set(length):
        task, why = task_at_length(data.task, name, length, spec.model.vocab_size)
        if task is None:
            raise LengthUnavailable(why)
        made[length] = task
        if task is data.task:
            return data.val_set
        try:
            inputs, targets = task.examples("val", run.seed, count)
        except Exception as exc:  # a plugin's bug: said in the cell, the trained run kept
            raise LengthUnavailable(f"task {name!r} at {length} tokens: examples raised "
                                    f"{type(exc).__name__}: {exc}") from None
        return inputs.to(data.device), targets.to(data.device)

    def scores(model, inputs, targets):
        length = inputs.shape[1]
        per_forward = run.eval_windows if length == config.seq_len else length_windows(
            config.batch_size, config.seq_len, spec.model.vocab_size, length,
            config.eval_tokens)  # as many at a time as the memory prediction counts
        found = evaluate_task(model, made[length], inputs, targets, run.precision, per_forward)
        return {"value": found["accuracy"], "loss": found["loss"],
                "exact_match": found["exact_match"], "tokens": found["targets"]}

    cells = evaluate_at_lengths(run.model, config.eval_lengths, make_set, scores, limit, reason)
    return lengths_entry("val_accuracy", spec, config, limit, cells, start, (
        "value: the final model's token accuracy on the task's validation set made at each "
        "length by the task's at_length (as many sequences, the same seed; at the training "
        "length, the validation set itself); loss and exact_match as the curve's; tokens: the "
        "target positions scored; null, with a reason, past the positions the model can place "
        "or where the task has no such length"))


def train_task(run, data, optimizer):
    """Train on the task: ``run`` is the loop's run over ``data`` (a :class:`TaskData`);
    ``optimizer`` names the run's optimizer for the result. Returns the result."""
    config, task = run.config, data.task
    steps, tokens_per_step = config.steps, config.batch_size * config.seq_len
    evaluate_after = set(eval_steps(steps, tokens_per_step, config.eval_every,
                                    config.eval_every_tokens))
    curve, batch_losses = [run.evaluate(0)], []
    for step in range(1, steps + 1):
        loss, _, _ = run.step(step, steps)
        batch_losses.append(loss)
        if step in evaluate_after:
            curve.append(run.evaluate(step))
    final = curve[-1]
    best = max(curve, key=lambda point: point["val_accuracy"])
    lengths = task_scores_at_lengths(run, data) if config.eval_lengths else None
    tokens = steps * tokens_per_step
    return {
        "task": dict(config.task), "chance": task.chance,
        "targets": {"train": int((data.train_set[1] != IGNORE).sum()),
                    "val": int((data.val_set[1] != IGNORE).sum())},
        "steps": steps, "batch_size": config.batch_size, "seq_len": config.seq_len,
        "lr": config.lr, "weight_decay": config.weight_decay, "tokens_seen": tokens,
        "seed": run.seed, "config": config.to_dict(), "curve": curve,
        "batch_losses": batch_losses,
        "final_val_loss": final["val_loss"],
        "final_val_perplexity": math.exp(min(final["val_loss"], 700.0)),
        "final_accuracy": final["val_accuracy"],
        "final_exact_match": final["val_exact_match"],
        "final_train_accuracy": final["train_accuracy"],
        **({"lengths": lengths} if lengths else {}),
        "best_accuracy": best["val_accuracy"], "best_step": best["step"],
        "best_tokens": best["tokens"],
        "best_val_loss": min(point["val_loss"] for point in curve),
        "train_seconds": run.train_seconds, "eval_seconds": run.eval_seconds,
        "dtype": config.dtype, "optimizer": optimizer,
        "compiled": config.compile, "first_step_seconds": run.first_step_seconds,
        "tokens_per_second": tokens / run.train_seconds if run.train_seconds else None,
        "conventions": (
            "the task's metrics on fixed sets of eval_tokens // seq_len sequences (the first of "
            "the training data; a validation set from its own stream), eval mode: loss is the "
            "mean cross-entropy over the target positions only (nats), accuracy the share of "
            "target positions whose arg-max is the target, exact_match the share of sequences "
            "with every target right; chance is the accuracy of a uniform guess; best is the "
            "highest validation accuracy on the curve; batches from the seed's own stream."),
    }
