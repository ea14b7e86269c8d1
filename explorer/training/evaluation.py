"""Evaluation of a training run: the mean next-token loss on fixed windows, in bounded memory.

The windows are run a few at a time (as many as the training step's logits hold:
:func:`explorer.measure.resources.evaluation_windows`) and the cross-entropy is taken on a chunk
of positions at a time (:func:`~explorer.measure.resources.loss_rows`), so the peak does not
grow with the tokens evaluated and :func:`~explorer.measure.resources.training_need` predicts
it. Eval mode (no dropout; the fused kernels of every ``impl``) under ``torch.inference_mode``.
"""

import contextlib

import torch
from torch.nn import functional as F

from explorer.measure.resources import loss_rows


def eval_loss(model, inputs, targets, precision=None, windows=None):
    """Mean next-token cross-entropy over every target in the windows (eval mode, under
    ``torch.inference_mode``), the forwards under ``precision`` (an autocast context factory)
    if given.

    In bounded memory: ``windows`` windows per forward (default: all at once), and the
    cross-entropy of :func:`~explorer.measure.resources.loss_rows` positions at a time, so no
    second full-vocabulary copy of a forward's logits exists (float32 logits are used as they
    are; lower precisions are upcast a chunk at a time). The sum is kept in float64."""
    was_training = model.training
    model.eval()
    windows = windows or len(inputs)
    total = torch.zeros((), dtype=torch.float64, device=targets.device)
    try:
        with torch.inference_mode():
            for i in range(0, len(inputs), windows):
                with precision() if precision else contextlib.nullcontext():
                    logits = model(inputs[i: i + windows]).flatten(0, 1)  # (n * T, V)
                chunk_targets = targets[i: i + windows].flatten()
                rows = loss_rows(logits.shape[-1])
                for j in range(0, len(logits), rows):
                    total += F.cross_entropy(logits[j: j + rows].float(),
                                             chunk_targets[j: j + rows], reduction="sum")
                del logits  # before the next forward allocates its own
    finally:
        model.train(was_training)
    return total.item() / targets.numel()
