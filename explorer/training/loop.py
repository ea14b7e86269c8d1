"""The training loop: a seeded AdamW run on a text corpus, the way a sweep's runs are made.

``train(model, spec, config)`` trains ``model`` in place with a :class:`TrainConfig` and returns
a result of plain data: train and validation loss curves on fixed windows, final and best
validation loss, the unigram baseline, tokens per second.

- Schedule: linear warmup to ``lr``, then constant, cosine or linear down to ``min_lr``
  (:func:`explorer.training.settings.learning_rate`). Gradient clipping on the global norm.
- Budget: ``steps``, or ``budget: {steps | tokens | flops}``, turned into steps by
  ``TrainConfig.resolve`` (FLOPs from :mod:`explorer.measure.costs`: 3 x the forward).
- Evaluation on the same fixed, non-overlapping windows of each split every ``eval_every``
  steps, or every ``eval_every_tokens`` training tokens so that curves of runs with different
  batch sizes line up on a tokens axis; step 0 and the last step always. In eval mode under
  ``torch.inference_mode``, in bounded memory: as many windows per forward as the training
  step's logits hold, the cross-entropy a chunk of positions at a time
  (:func:`explorer.measure.resources.evaluation_windows`, ``loss_rows``), so its peak does not
  grow with ``eval_tokens``.
- Memory: the run's peak is predicted (:func:`explorer.measure.resources.training_need`, the
  one prediction the train analysis and sweeps use too) and a run that would not fit in the
  memory available (the machine's, the cgroup's, the process's rlimit) is refused with a
  :class:`ResourceError` before anything is allocated.
- Seeds: one seed, three streams. The caller builds the model's weights with it
  (``build_model(spec, seed=seed)``); the batch order and the dropout masks use streams derived
  from it (:func:`derive_seed`), so changing one never shifts another.
- Divergence: a loss (or gradient norm) that is NaN or inf stops the run at that step with a
  :class:`DivergedError` naming the step and the first module whose output is not finite.
- Speed: AdamW's fused kernel where the device has one (:func:`explorer.training.optimizers.adamw`; equal to the default
  implementation to ~1e-7), gradients freed (``set_to_none``) before each forward; ``compile``
  wraps the model in ``torch.compile`` for the training steps (evaluation runs eagerly).
- Device and precision: ``device`` (cpu, cuda, mps, auto) holds the weights, the batches and
  the activations; ``dtype`` bfloat16 or float16 runs forwards under autocast with float32
  master weights and AdamW state, float16 with a gradient scaler (:mod:`explorer.training.devices`).
- Auxiliary losses: any module of the model with a method ``explorer_aux_loss()`` is asked for
  it after each training forward; a scalar tensor is added to the loss that is backpropagated
  (None adds nothing). A mixture-of-experts layer returns its load-balancing loss this way.
  The result reports the cross-entropy alone in ``batch_losses`` and the auxiliary part in
  ``aux_losses``.
- Parametrization: under μP (``model.parametrization: mup``) AdamW gets one parameter group per
  role, whose learning rate is the schedule's times the group's ``lr_scale``
  (:func:`explorer.model.parametrization.optimizer_groups`); the standard parametrization is
  one group of every parameter.
"""

import contextlib
import hashlib
import math
import time

import torch
from torch.nn import functional as F

from explorer.training.compilation import compile_errors, compile_model
from explorer.model.contracts import aux_loss, stats
from explorer.model.gpt import mup_roles
from explorer.model.parametrization import is_mup, optimizer_groups
from explorer.training.corpus import load_corpus, tokenize, unigram_baseline, windows
from explorer.training.devices import autocast, grad_scaler, resolve_device, synchronize
from explorer.errors import ExplorerError
from explorer.measure.numerics import first_nonfinite_module
from explorer.measure.resources import evaluation_windows
from explorer.training.evaluation import eval_loss
from explorer.training.lengths import validation_loss_at_lengths, validation_windows
from explorer.training.memory import check_memory, map_large_allocations
from explorer.training.optimizers import adamw, optimizer_name
from explorer.training.settings import TrainConfig, eval_steps, learning_rate

__all__ = ["TrainConfig", "train", "derive_seed", "DivergedError", "adamw"]



class DivergedError(ExplorerError):
    """The loss or the gradient norm became NaN or inf; ``step`` is where it happened."""

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


def derive_seed(seed, stream):
    """A seed for one random stream (``"batches"``, ``"dropout"``) derived from the run's seed."""
    digest = hashlib.sha256(f"explorer:{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # 63 bits: any torch generator takes it


# Devices whose AdamW has a fused kernel (torch 2.13; the meta device has none).
def load_training_corpus(path, spec, tokenizer):
    """Read and tokenize the corpus file (default: the standard library's) for ``spec``."""
    return prepare_corpus(*load_corpus(path), spec, tokenizer)


def prepare_corpus(text, source, spec, tokenizer):
    """Tokenize ``text`` for ``spec`` and split it, checking its ids fit the vocabulary."""
    corpus = tokenize(text, source, tokenizer, spec.tokenizer)
    vocab = spec.model.vocab_size
    for part in (corpus.train_ids, corpus.val_ids):
        if len(part) and int(part.max()) >= vocab:
            raise ExplorerError(f"train: model.vocab_size {vocab} is too small for the "
                                f"{spec.tokenizer} tokenizer (token id {int(part.max())} in the "
                                f"corpus); use vocab_size >= {tokenizer.n_vocab}")
    return corpus


class _Run:
    """One training run's state: model, data, optimizer, clocks."""

    def __init__(self, model, spec, config, corpus, seed, device):
        self.model, self.spec, self.config, self.device = model, spec, config, device
        self._data(corpus, seed)
        # μP: a group per parameter role, each with its lr_scale (explorer.model.parametrization)
        roles = mup_roles(model, spec) if is_mup(spec.model) else None
        self.optimizer = adamw(optimizer_groups(model, spec.model, config.weight_decay, roles),
                               config.lr, config.weight_decay)
        self.scaler = grad_scaler(device, config.dtype)
        self.precision = lambda: autocast(device, config.dtype)
        self.forward = compile_model(model, "train.compile") if config.compile else model
        self.eval_windows = evaluation_windows(config.batch_size, config.seq_len,
                                               spec.model.vocab_size)
        self.train_seconds = self.eval_seconds = 0.0
        self.first_step_seconds = None

    def _data(self, corpus, seed):
        """The corpus's splits, evaluation windows and batch stream (a task's run overrides
        this, ``batch`` and ``evaluate``: explorer.training.task_training)."""
        config, device = self.config, self.device
        s = config.seq_len
        if len(corpus.train_ids) <= s or len(corpus.val_ids) <= s:
            raise ExplorerError(f"train: corpus {corpus.source} has {corpus.tokens:,} tokens: "
                                f"its train ({len(corpus.train_ids):,}) and validation "
                                f"({len(corpus.val_ids):,}) splits each need more than seq_len "
                                f"{s} tokens")
        self.train_ids = corpus.train_ids.to(device)
        self.val_x, self.val_y = (t.to(device) for t in windows(corpus.val_ids, s,
                                                                config.eval_tokens))
        self.train_x, self.train_y = (t.to(device) for t in windows(corpus.train_ids, s,
                                                                    config.eval_tokens))
        self.batches = torch.Generator(device=device).manual_seed(derive_seed(seed, "batches"))
        self.offsets = torch.arange(s, device=device)

    def evaluate(self, step):
        start = time.perf_counter()
        point = {"step": step, "tokens": step * self.config.batch_size * self.config.seq_len,
                 "train_loss": eval_loss(self.model, self.train_x, self.train_y, self.precision,
                                         self.eval_windows),
                 "val_loss": eval_loss(self.model, self.val_x, self.val_y, self.precision,
                                       self.eval_windows)}
        self.eval_seconds += time.perf_counter() - start
        return point

    def batch(self):
        s = self.config.seq_len
        starts = torch.randint(0, len(self.train_ids) - s, (self.config.batch_size,),
                               generator=self.batches, device=self.device)
        windows_at = starts[:, None] + self.offsets  # (B, T)
        return self.train_ids[windows_at], self.train_ids[windows_at + 1]

    def step(self, step, steps):
        """One optimizer step; returns (cross-entropy, auxiliary loss or None, grad norm or None).

        A compiled model compiles in its first step (forward and backward): a failure to
        compile is one line, not a traceback."""
        start = time.perf_counter()
        first_compiled = self.config.compile and self.first_step_seconds is None
        with compile_errors("train.compile") if first_compiled else contextlib.nullcontext():
            value, aux_value, norm = self._step(step, steps)
        seconds = time.perf_counter() - start
        if self.first_step_seconds is None:
            self.first_step_seconds = seconds
        self.train_seconds += seconds
        return value, aux_value, norm

    def _step(self, step, steps):
        lr = learning_rate(step, self.config, steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        inputs, targets = self.batch()
        # The last step's gradients are freed before this forward, not after it: they and the
        # forward's activations never exist at once.
        self.optimizer.zero_grad(set_to_none=True)
        with self.precision():
            logits = self.forward(inputs)  # (B, T, V)
            aux, parts = aux_loss(self.model)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        del logits  # backward needs the log-probabilities only: free the logits before it
        value, aux_value = loss.item(), None if aux is None else aux.item()
        if not math.isfinite(value):
            self.diverged(step, steps, f"the loss is {value}", inputs)
        if aux_value is not None and not math.isfinite(aux_value):
            bad = next(name for name, v in parts if not math.isfinite(v.item()))
            self.diverged(step, steps, f"the auxiliary loss of {bad} is {aux_value}")
        self.scaler.scale(loss if aux is None else loss + aux).backward()
        norm = None
        if self.config.grad_clip:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                  self.config.grad_clip).item()
            if not math.isfinite(norm) and not self.scaler.is_enabled():
                self.diverged(step, steps, f"the gradient norm is {norm}")
        self.scaler.step(self.optimizer)  # float16: skipped when a gradient overflowed
        self.scaler.update()
        synchronize(self.device)
        return value, aux_value, norm

    def diverged(self, step, steps, what, inputs=None):
        tokens = step * self.config.batch_size * self.config.seq_len
        where = ""
        if inputs is not None:
            module = first_nonfinite_module(self.model, inputs)
            where = f", first non-finite output at {module}" if module else ""
        raise DivergedError(f"train: diverged at step {step} of {steps} ({tokens:,} tokens): "
                            f"{what}{where}; lower train.lr or set train.grad_clip", step)


def train(model, spec, config=None, corpus=None, tokenizer=None, seed=None, need=None):
    """Train ``model`` (built from ``spec``) in place and return the result as plain data.

    ``config`` is a :class:`TrainConfig` (default: its defaults); ``corpus`` an already
    tokenized :class:`explorer.training.corpus.Corpus` (default: ``config.corpus`` read and tokenized
    with ``tokenizer``, default the spec's); ``seed`` the run's seed (default: the spec's), of
    which the batch order and dropout streams are derived. The model's weights are the
    caller's: build them with the same seed.

    Before anything is allocated, the run's memory is predicted
    (:func:`explorer.measure.resources.training_need`) and a run that would not fit in the
    memory available is refused with a :class:`explorer.ResourceError` (the model's own weights,
    already there, are counted as available). ``need``: that prediction, made and checked by
    the caller already (the train analysis, a sweep's worker); it is not checked again. The
    result reports it under ``memory``.

    Raises :class:`DivergedError` on a non-finite loss and :class:`ExplorerError` on a corpus
    that is missing or too short.
    """
    config = (config or TrainConfig()).resolve(spec)
    seed = spec.seed if seed is None else seed
    if need is None:
        need = check_memory(model, spec, config)
    map_large_allocations()
    if corpus is None and not config.task:
        if tokenizer is None:
            from explorer.model.tokenizer import get_tokenizer

            tokenizer = get_tokenizer(spec.tokenizer, spec.plugin_manager)
        corpus = load_training_corpus(config.corpus, spec, tokenizer)
    with _environment(model, config, seed) as (threads, device):
        if config.task:  # a synthetic task: its own batches, evaluation and metrics
            result = _train_task(model.to(device).train(), spec, config, seed, device)
        else:
            result = _train(model.to(device).train(), spec, config, corpus, seed, device)
    result.update(threads=threads, device=str(device),
                  parameters=sum(p.numel() for p in model.parameters()),
                  memory=need.to_dict())
    return result


@contextlib.contextmanager
def _environment(model, config, seed):
    """Threads and device for the run; the dropout stream seeded; the caller's random state and
    thread count restored afterwards."""
    parameters = sum(p.numel() for p in model.parameters())
    threads = config.threads_for(parameters, torch.get_num_threads())
    device = resolve_device(config.device, "train.device", "device: cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    from explorer.model.gpt import seeded

    try:
        # An accelerator draws the dropout masks from its own generator: seeded too.
        with seeded(derive_seed(seed, "dropout"), device):
            yield threads, device
    finally:
        torch.set_num_threads(before)


class _TaskRun(_Run):
    """A run on a task: the task's batches and evaluation (explorer.training.task_training)."""

    def __init__(self, model, spec, config, data, seed, device):
        self.data, self.seed = data, seed
        super().__init__(model, spec, config, None, seed, device)

    def _data(self, corpus, seed):
        pass  # the task's data is self.data

    def batch(self):
        return self.data.batch()

    def evaluate(self, step):
        return self.data.evaluate(self, step)


def _train_task(model, spec, config, seed, device):
    from explorer.training.task_training import TaskData, train_task

    run = _TaskRun(model, spec, config, TaskData(config, spec, seed, device), seed, device)
    return train_task(run, run.data, optimizer_name(run.optimizer))


def measure_speed(model, spec, config, corpus, seed=0, steps=2):
    """Seconds per training step and per evaluation, timed on ``model`` (which it trains a few
    steps: pass a throwaway one) after one warm-up step."""
    config = config.resolve(spec)
    map_large_allocations()  # as train() runs: the same allocator, the same times
    with _environment(model, config, seed) as (_, device):
        run = _Run(model.to(device).train(), spec, config, corpus, seed, device)
        run.step(1, config.steps)  # warm-up: first-call allocations
        run.train_seconds = 0.0
        for step in range(2, steps + 2):
            run.step(step, config.steps)
        run.evaluate(0)
    return {"step_seconds": run.train_seconds / steps, "eval_seconds": run.eval_seconds}


def _train(model, spec, config, corpus, seed, device):
    run = _Run(model, spec, config, corpus, seed, device)
    # Before training: a length the validation split cannot hold is an error now, not later.
    length_windows = {n: (x.to(device), y.to(device)) for n, (x, y) in validation_windows(
        corpus.val_ids, config.eval_lengths, config.eval_tokens, corpus.source).items()}
    steps, tokens_per_step = config.steps, config.batch_size * config.seq_len
    evaluate_after = set(eval_steps(steps, tokens_per_step, config.eval_every,
                                    config.eval_every_tokens))
    baseline = unigram_baseline(corpus.train_ids, run.val_y.cpu(), spec.model.vocab_size)
    curve, batch_losses, aux_losses, clipped, max_norm = [run.evaluate(0)], [], [], 0, 0.0
    module_stats = {}
    for step in range(1, steps + 1):
        loss, aux, norm = run.step(step, steps)
        batch_losses.append(loss)
        if aux is not None:
            aux_losses.append(aux)
        if norm is not None:
            max_norm = max(max_norm, norm)
            clipped += norm > config.grad_clip
        if step in evaluate_after:
            # This step's training batch, before evaluating runs other forwards through them.
            module_stats = stats(model)
            point = run.evaluate(step)
            if aux is not None:
                point["aux_loss"] = aux
            if module_stats:
                point["stats"] = module_stats
            curve.append(point)
    lengths = validation_loss_at_lengths(model, spec, config, length_windows, run.precision) \
        if config.eval_lengths else None
    final = curve[-1]["val_loss"]
    best = min(curve, key=lambda point: point["val_loss"])
    tokens = steps * tokens_per_step
    return {
        "corpus": corpus.describe(run.train_y.numel(), run.val_y.numel()),
        "steps": steps, "batch_size": config.batch_size, "seq_len": config.seq_len,
        "lr": config.lr, "weight_decay": config.weight_decay, "tokens_seen": tokens,
        "seed": seed,
        "config": config.to_dict(),
        "curve": curve,
        "batch_losses": batch_losses,
        **({"aux_losses": aux_losses} if aux_losses else {}),
        # The last step's explorer_stats() by module (an MoE's per-expert load).
        **({"stats": module_stats} if module_stats else {}),
        "final_val_loss": final,
        # The final model's validation loss at each of eval_lengths (explorer.training.lengths).
        **({"lengths": lengths} if lengths else {}),
        "final_val_perplexity": math.exp(final),
        "best_val_loss": best["val_loss"], "best_step": best["step"],
        "best_tokens": best["tokens"],
        "unigram_baseline": baseline,
        "unigram_perplexity": math.exp(baseline),
        "below_unigram": final < baseline,
        "grad_clip": {"max_norm": config.grad_clip, "clipped_steps": clipped,
                      "largest_norm": max_norm} if config.grad_clip else None,
        "train_seconds": run.train_seconds,
        "eval_seconds": run.eval_seconds,
        "dtype": config.dtype,
        "optimizer": optimizer_name(run.optimizer),
        "compiled": config.compile,
        # The first step's time; compiled, it is mostly the compilation.
        "first_step_seconds": run.first_step_seconds,
        "tokens_per_second": tokens / run.train_seconds if run.train_seconds else None,
        "conventions": (
            "losses are mean next-token cross-entropy in nats; the corpus is split 90/10 by "
            "position; curve losses are on fixed non-overlapping windows of the first "
            "eval_tokens tokens of each split (eval mode), at step 0, every eval_every steps "
            "(or at the first step reaching each multiple of eval_every_tokens) and the last "
            "step; batch_losses are the training batches' cross-entropy (train mode, auxiliary "
            "losses apart: aux_losses, each module's explorer_aux_loss() added to the loss); a "
            "curve point's aux_loss and stats (an MoE's per-expert load: each expert's share of "
            "the token assignments) are its step's training batch's; the unigram baseline is "
            "scored on the same validation targets "
            "under add-one smoothed train-split frequencies; AdamW with warmup and the "
            "schedule; weights from the seed, batch order and dropout from streams derived "
            "from it; tokens_per_second counts training steps only (evaluation excluded)."),
    }

