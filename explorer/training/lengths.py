"""Evaluation at several sequence lengths: how a model trained on windows of ``seq_len`` tokens
does on shorter and longer ones (length extrapolation, what positional ablations are about).

``train.eval_lengths: [128, 256, 512]`` measures the final model's validation loss at each
length, past ``seq_len`` and past ``model.context_length`` too, where the positional encodings
allow it: a learned table places only its ``context_length`` rows, RoPE, ALiBi, sinusoidal and
no positions any number (``PositionalEncoding.max_positions``). A length past what the model can
place is a cell that says so (value None and a reason), not an error.

The windows at each length come from the same validation split, deterministically: the
non-overlapping windows of that length in its first ``eval_tokens`` tokens (at least one
window; the whole split when ``eval_tokens`` is 0), as the curve's are. So every length reads
about the same tokens, and the training length reads exactly the curve's windows: its value is
the final validation loss.

Memory: each forward holds as many tokens as evaluation at ``seq_len`` does (fewer windows per
forward at longer lengths, at least one), and
:func:`explorer.measure.resources.training_need` predicts the longest length's forward, so a
length that would not fit is refused before training starts.

:func:`evaluate_at_lengths` takes the windows and the metric as functions, so a task's
accuracy at a length (:func:`explorer.training.task_training.task_scores_at_lengths`: the task's
validation set made at that length by its ``at_length``) plugs in beside the text's loss.
"""

import contextlib
import time

from explorer.errors import ExplorerError
from explorer.measure.resources import length_windows
from explorer.training.corpus import windows
from explorer.training.evaluation import eval_loss


def position_limit(model, spec=None):
    """``(limit, reason)``: the longest sequence ``model`` can place (None: no limit) and what a
    cell past it says, naming the encoding that sets it when ``spec`` is given:
    ``beyond learned positions (context_length 128)``."""
    method = getattr(model, "max_positions", None)
    if not callable(method):  # not a GPTModel: its context is all it promises
        limit = getattr(getattr(model, "config", None), "context_length", None)
        return limit, f"beyond the model's context_length {limit}"
    limit = method()
    if limit is None:
        return None, ""
    name = _limiting_encoding(model, spec, limit) if spec is not None else None
    context = model.config.context_length
    where = f"context_length {context}" if limit == context else f"{limit} positions"
    return limit, f"beyond {name + ' ' if name else ''}positions ({where})"


def _limiting_encoding(model, spec, limit):
    """The component name of an encoding of ``model`` that places only ``limit`` positions."""
    from explorer.model.contracts import max_positions

    if max_positions(model.pos_emb) == limit:
        return spec.components["positional"].name
    for layer in range(spec.model.n_layers):
        if max_positions(model.positional_at(layer)) == limit:
            return spec.components_at(layer)["positional"].name
    return None


class LengthUnavailable(Exception):
    """Raised by ``make_windows`` for a length it has no windows of; the message is the
    cell's reason (a task that cannot be made that long)."""


def evaluate_at_lengths(model, lengths, make_windows, metric, limit=None, reason=""):
    """One cell per length: ``{"length", "value", "windows", "tokens", "reason"}``.

    ``make_windows(length)`` gives ``(inputs, targets)``, (n, length) each, or raises
    :class:`LengthUnavailable`; ``metric(model, inputs, targets)`` the value there (a loss, an
    accuracy), or a dict of ``value`` and further figures for the cell (``tokens`` among
    them: the positions scored, when not all are). A length above ``limit`` (the positions the
    model can place; None: no limit), or one without windows, is not run: its value is None
    and its ``reason`` says why. The forwards may go past the model's ``context_length``
    (``GPTModel.beyond_context``)."""
    cells = []
    for length in lengths:
        missing = {"length": length, "value": None, "windows": 0, "tokens": 0}
        if limit is not None and length > limit:
            cells.append({**missing, "reason": reason or f"beyond the {limit} positions the "
                                                        "model places"})
            continue
        try:
            inputs, targets = make_windows(length)
        except LengthUnavailable as exc:
            cells.append({**missing, "reason": str(exc)})
            continue
        with _beyond_context(model):
            value = metric(model, inputs, targets)
        found = value if isinstance(value, dict) else {"value": value}
        cells.append({"length": length, "windows": len(inputs), "tokens": targets.numel(),
                      **found, "reason": None})
    return cells


def _beyond_context(model):
    method = getattr(model, "beyond_context", None)
    return method() if callable(method) else contextlib.nullcontext()


def validation_windows(val_ids, lengths, eval_tokens, source="the corpus"):
    """``{length: (inputs, targets)}``: the non-overlapping windows of each length in the first
    ``eval_tokens`` tokens of the validation split (0: all of it), at least one window each.
    Raises ExplorerError for a length the split cannot hold one window of."""
    found = {}
    for length in lengths:
        if len(val_ids) <= length:
            raise ExplorerError(f"train: eval_lengths: {length} is longer than the validation "
                                f"split of {source} ({len(val_ids):,} tokens; a window needs "
                                f"{length + 1}); use lengths up to {len(val_ids) - 1} or a "
                                "longer corpus")
        found[length] = windows(val_ids, length, max(eval_tokens, length) if eval_tokens else 0)
    return found


def validation_loss_at_lengths(model, spec, config, val_windows, precision):
    """The ``lengths`` entry of a training result: the validation loss at each of
    ``config.eval_lengths`` (windows from :func:`validation_windows`), each forward holding as
    many tokens as evaluation at ``config.seq_len`` does."""
    start = time.perf_counter()
    limit, reason = position_limit(model, spec)

    def loss(model, inputs, targets):
        per_forward = length_windows(config.batch_size, config.seq_len, spec.model.vocab_size,
                                     inputs.shape[1])
        return eval_loss(model, inputs, targets, precision, per_forward)

    cells = evaluate_at_lengths(model, config.eval_lengths, val_windows.__getitem__, loss,
                                limit, reason)
    return lengths_entry("val_loss", spec, config, limit, cells, start, (
        "value: the final model's mean next-token cross-entropy (nats) on the non-overlapping "
        "windows of each length in the first eval_tokens tokens of the validation split (at "
        "least one window; eval mode); null, with a reason, past the positions the model can "
        "place"))


def lengths_entry(metric, spec, config, limit, cells, start, conventions):
    """The ``lengths`` entry of a training result, whose ``cells`` measure ``metric``
    (``val_loss``, ``val_accuracy``) from ``start`` (a perf_counter time) until now."""
    return {"metric": metric, "seq_len": config.seq_len,
            "context_length": spec.model.context_length, "max_positions": limit,
            "cells": cells, "seconds": time.perf_counter() - start, "conventions": conventions}
