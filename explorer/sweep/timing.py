"""Time per run for ``--dry-run``: measured on a few grid points, predicted for the rest.

Timing a point trains a throwaway model for a step (after a warm-up step) and evaluates it on
one chunk of windows; a 100-point grid would spend minutes doing that for every point, and a
point whose model does not fit in memory (GPT-3's sizes) cannot be timed at all. So at most
``TIMED_POINTS`` points are timed: those whose run fits in memory and whose training step costs
at most ``CHEAP_STEP_FLOPS``, spread over their range of FLOPs per step. Every other point is
predicted with ``seconds = a * n_layers + b * FLOPs`` (a: the per-block overhead of launching
ops, which dominates small models; 1/b: the FLOP rate, which dominates large ones), fitted with
a, b >= 0 to the timed points, for a training step and for an evaluated token alike. On a
100-point grid of tiny models (1-10 layers, width 16-160) five timed points predict the others'
steps within 0.6-1.5x and their sum within 1%. When no point can be timed, the rate is the
machine's fp32 matmul rate, measured in the same run: a lower bound, as a training step never
runs faster than its matmuls.

Each point says which it got: ``measured``, ``predicted`` or ``lower_bound``.
"""

import time
from dataclasses import replace

from ..training.corpus import windows
from ..measure.resources import evaluation_windows
from ..training.loop import measure_speed

TIMED_POINTS = 5
CHEAP_STEP_FLOPS = 2e10  # a training step of at most this many FLOPs takes well under a second
MATMUL_SIZE = 1024  # the calibration matmul: 2 * 1024^3 FLOPs, a few ms


def eval_tokens_per_evaluation(config, corpus):
    """Tokens one evaluation reads: the windows training evaluates on, of the train and the
    validation split."""
    return sum(windows(ids, config.seq_len, config.eval_tokens)[0].numel()
               for ids in (corpus.train_ids, corpus.val_ids))


def length_tokens(config, corpus):
    """Tokens the final evaluation at ``train.eval_lengths`` reads (explorer.training.lengths):
    per length, the validation windows of that length in the first ``eval_tokens`` tokens (a
    length the split cannot hold is refused before a run starts), or for a task that many
    sequences of its validation set made at that length. Lengths a model cannot place are
    counted too: an upper bound."""
    from ..training.task_training import eval_sequences

    total = 0
    for length in config.eval_lengths:
        if config.task:  # the task's validation set, made at this length
            total += eval_sequences(config) * length
        elif len(corpus.val_ids) > length:
            reads = max(config.eval_tokens, length) if config.eval_tokens else 0
            total += windows(corpus.val_ids, length, reads)[0].numel()
    return total


def measure(point_spec, config, corpus, threads, seed):
    """``(step seconds, evaluation seconds per token)`` of one point, timed on a throwaway model:
    one step after a warm-up step, and an evaluation of one chunk of windows per split."""
    from ..model.gpt import build_model

    windows = evaluation_windows(config.batch_size, config.seq_len, point_spec.model.vocab_size)
    one_chunk = replace(config, threads=threads, eval_tokens=windows * config.seq_len)
    speed = measure_speed(build_model(point_spec, seed=seed), point_spec, one_chunk, corpus,
                          seed=seed, steps=1)
    return speed["step_seconds"], speed["eval_seconds"] / eval_tokens_per_evaluation(one_chunk,
                                                                                      corpus)


def matmul_flops_per_second(threads, device="cpu"):
    """The fp32 matmul rate here, on ``threads`` threads: the best of a few 1024^3 products."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device)
        best = float("inf")
        for _ in range(4):
            start = time.perf_counter()
            a @ a
            if a.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 2 * MATMUL_SIZE**3 / best


def choose(candidates):
    """Up to TIMED_POINTS of ``candidates`` (``(step FLOPs, index)``), spread over their FLOPs:
    the cheapest, the dearest, and evenly between."""
    ordered = sorted(candidates)
    if len(ordered) <= TIMED_POINTS:
        return [i for _, i in ordered]
    picks = {round(j * (len(ordered) - 1) / (TIMED_POINTS - 1)) for j in range(TIMED_POINTS)}
    return [ordered[k][1] for k in sorted(picks)]


def fit(rows, ys):
    """``f(u, v) = a * u + b * v`` with a, b >= 0, least squares over ``rows`` ``[(u, v)]``:
    the two-term fit if both come out non-negative, else the better one-term fit."""
    su = max(u for u, _ in rows) or 1.0  # scaled to 1: layers and FLOPs differ by 1e10
    sv = max(v for _, v in rows) or 1.0
    us, vs = [u / su for u, _ in rows], [v / sv for _, v in rows]
    uu, vv = sum(u * u for u in us), sum(v * v for v in vs)
    uv = sum(u * v for u, v in zip(us, vs))
    uy, vy = sum(u * y for u, y in zip(us, ys)), sum(v * y for v, y in zip(vs, ys))
    candidates = [(uy / uu, 0.0)] if uu else []
    candidates += [(0.0, vy / vv)] if vv else []
    det = uu * vv - uv * uv
    if det > 1e-9 * uu * vv:  # not collinear
        a, b = (uy * vv - vy * uv) / det, (vy * uu - uy * uv) / det
        if a >= 0 and b >= 0:
            candidates.append((a, b))

    def residual(c):
        return sum((c[0] * u + c[1] * v - y) ** 2 for u, v, y in zip(us, vs, ys))

    a, b = min(candidates, key=residual)
    return lambda u, v: a * u / su + b * v / sv


def seconds_per_step(points, measure_point, fits, rate):
    """Per point, ``(step seconds, evaluation seconds per token, basis)``.

    ``points`` are ``(n_layers, step FLOPs, forward FLOPs per token)``; ``measure_point(i)``
    times point ``i``; ``fits(i)`` says whether its run fits in memory; ``rate()`` is the FLOP
    rate for the lower bound when no point can be timed.
    """
    cheap = [(flops, i) for i, (_, flops, _) in enumerate(points)
             if flops <= CHEAP_STEP_FLOPS and fits(i)]
    timed = {i: measure_point(i) for i in choose(cheap)}
    if not timed:
        flops_per_second = rate()
        return [(step / flops_per_second, forward / flops_per_second, "lower_bound")
                for _, step, forward in points]
    step = fit([points[i][:2] for i in timed], [t[0] for t in timed.values()])
    evaluation = fit([(points[i][0], points[i][2]) for i in timed], [t[1] for t in timed.values()])
    return [(*timed[i], "measured") if i in timed else
            (step(layers, step_flops), evaluation(layers, forward), "predicted")
            for i, (layers, step_flops, forward) in enumerate(points)]
