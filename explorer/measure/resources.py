"""Predicting what an analysis or a training run will allocate, and refusing before allocating
what would not fit.

A prediction is a :class:`Need`: the parts held throughout (weights, gradients, AdamW moments)
plus the largest of the phases the work goes through one after another (a training step's
saved activations and logits; an evaluation pass's logits). Each part is an exact figure from
the model's shapes or from the activations measured on fake tensors (explorer.measure.activations), so
the refusal names the same numbers the memory analysis reports.

One function predicts a training run of the core loop (explorer.training.loop), whoever starts
it: :func:`training_need`. ``explorer.train()``, the ``train`` analysis, a sweep's ``--dry-run``
and its workers, and the memory analysis's training figures all read it.

What is available comes from :mod:`explorer.measure.available` (the machine, the memory
cgroup, the process's rlimits).
"""

from dataclasses import dataclass

from explorer.errors import ExplorerError, ResourceError

# The share of the available memory a prediction may use: the rest is left for what it does not
# count (the Python heap, the tokenizer, allocator slack).
USABLE = 0.9
# The share of the available memory a model's weights alone may take before it is built (every
# analysis that needs weights: explorer.analysis.runner.check_fits, explorer generate): the rest
# is left for what runs on them (activations, gradients), which each analysis predicts itself.
WEIGHTS_SHARE = 0.8
# Evaluation runs as many windows per forward as the training step's own logits hold (its batch
# size at the same sequence length), or as this many bytes of logits if more: a small model's
# logits are small, and one window per forward would spend its time in Python.
EVAL_LOGITS_FLOOR = 16 * 2**20
# Evaluation's cross-entropy is computed on this many bytes of logits at a time (their
# log-probabilities, in float32), never on a second full-vocabulary copy of a forward's logits.
EVAL_LOSS_CHUNK = 32 * 2**20
def size(n):
    """Bytes for a message: ``622 MiB``, ``1.2 GiB``."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MiB"
    if n >= 2**10:
        return f"{n / 2**10:.0f} KiB"
    return f"{n} bytes"


@dataclass(frozen=True)
class Part:
    """One figure of a prediction: ``bytes`` per copy, ``copies`` of it."""

    name: str
    bytes: int
    copies: int = 1
    note: str = ""  # how it was sized, e.g. "at batch 8 x 1024"

    @property
    def total(self):
        return self.bytes * self.copies

    def __str__(self):
        copies = f" x {self.copies} copies" if self.copies > 1 else ""
        note = f" {self.note}" if self.note else ""
        return f"{self.name} {size(self.bytes)}{copies}{note}"


@dataclass(frozen=True)
class Need:
    """What an analysis will hold at its peak.

    ``parts`` are held throughout; ``phases`` happen one after another, so only the largest
    counts. ``lower`` says which options make it smaller.
    """

    what: str
    parts: tuple
    lower: str
    phases: tuple = ()
    phase_names: tuple = ()  # one per phase, for reports ("step", "evaluation"); may be empty

    def peak_phase(self):
        return max(self.phases, key=lambda phase: sum(p.total for p in phase), default=())

    def phase(self, name):
        """The phase called ``name`` (a tuple of parts), or None."""
        return dict(zip(self.phase_names, self.phases)).get(name)

    @property
    def total(self):
        return sum(p.total for p in (*self.parts, *self.peak_phase()))

    def __str__(self):
        parts = ", ".join(str(p) for p in (*self.parts, *self.peak_phase()) if p.total)
        return f"{self.what} needs about {size(self.total)} ({parts})"

    def to_dict(self):
        """Plain data: ``total``, each part held throughout, each phase's parts and bytes, and
        which phase is the peak."""
        def part(p):
            return {"name": p.name, "bytes": p.bytes, "copies": p.copies, "total": p.total,
                    "note": p.note}

        names = self.phase_names or tuple(f"phase {i}" for i in range(len(self.phases)))
        peak = self.peak_phase()
        return {"what": self.what, "total": self.total, "parts": [part(p) for p in self.parts],
                "phases": {name: {"bytes": sum(p.total for p in phase),
                                  "parts": [part(p) for p in phase]}
                           for name, phase in zip(names, self.phases)},
                "peak_phase": next((n for n, ph in zip(names, self.phases) if ph is peak), None),
                "lower": self.lower, "text": str(self)}


def refuse_unless_fits(need, available, source):
    """Raise :class:`ResourceError` unless ``need`` fits in USABLE of ``available`` bytes."""
    if available is None or need.total <= USABLE * available:
        return
    kept = "" if need.total > available else f" and {1 - USABLE:.0%} of it is kept free"
    raise ResourceError(f"{source}: {need} but only {size(available)} is available{kept}; "
                        f"{need.lower}")


def weight_bytes(model):
    """Bytes the model's parameters (each tensor once) and buffers take, from shapes alone (a
    compact model: its full stack's)."""
    from explorer.model.stack import stack_total

    return stack_total(model, lambda module: _tensor_bytes(module, buffers=True))


def parameter_bytes(model, trainable=True):
    """Bytes of the parameters, each tensor once: the trainable ones (what the gradients take,
    and each AdamW moment), or all of them (a compact model: its full stack's)."""
    from explorer.model.stack import stack_total

    return stack_total(model, lambda module: _tensor_bytes(module, trainable=trainable))


def _tensor_bytes(module, buffers=False, trainable=False):
    tensors = [p for p in module.parameters() if p.requires_grad or not trainable]
    seen, total = set(), 0
    for t in [*tensors, *(module.buffers() if buffers else ())]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def logits_bytes_per_token(spec, model):
    """Bytes of one position's logits, in the dtype of the model's parameters."""
    return spec.model.vocab_size * next(model.parameters()).element_size()


def activations_per_sequence(spec, seq_len):
    """fp32 bytes autograd saves for one sequence of ``seq_len`` tokens (batch 1) in a training
    forward + loss: measured on fake tensors, or on the meta device (more: unfused attention)
    for a component fake tensors cannot run."""
    from explorer.measure.activations import saved_activation_bytes
    from explorer.model.gpt import build_model

    try:
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode():
            return saved_activation_bytes(build_model(spec, compact=True), 1, seq_len)["total"]
    except ExplorerError:
        raise
    except Exception:  # data-dependent code in a component
        meta = build_model(spec, device="meta", compact=True)
        return saved_activation_bytes(meta, 1, seq_len)["total"]


def evaluation_windows(batch_size, seq_len, vocab_size, eval_tokens=0, bytes_per_value=4):
    """Windows per evaluation forward: as many as the training step's own logits hold (its
    ``batch_size``, at the same ``seq_len``), or EVAL_LOGITS_FLOOR's worth if that is more; at
    most the windows ``eval_tokens`` makes (0: the whole split, not known here). Never more as
    ``eval_tokens`` grows: evaluation's memory is bounded by the training step's."""
    per_window = seq_len * vocab_size * bytes_per_value
    windows = max(batch_size, EVAL_LOGITS_FLOOR // per_window, 1)
    return max(1, min(windows, eval_tokens // seq_len)) if eval_tokens else windows


def length_windows(batch_size, seq_len, vocab_size, length, eval_tokens=0):
    """Windows of ``length`` tokens per forward when evaluating at other lengths
    (``train.eval_lengths``): the tokens one evaluation forward at ``seq_len`` holds
    (:func:`evaluation_windows`), in windows of ``length``; at least one, and with
    ``eval_tokens`` no more than the windows of that length it makes."""
    windows = max(1, evaluation_windows(batch_size, seq_len, vocab_size) * seq_len // length)
    return min(windows, max(eval_tokens, length) // length) if eval_tokens else windows


def lengths_phase(spec, config, model, per_token):
    """The parts of evaluating at the longest of ``config.eval_lengths`` the model can place
    (``model.max_positions()``), or () when none is longer than ``seq_len``: its logits, their
    log-probabilities a chunk at a time, and one layer's attention scores (n_heads x length x
    length per window: what an attention that forms them, or an ALiBi bias, holds)."""
    limit = model.max_positions() if hasattr(model, "max_positions") else None
    runnable = [n for n in config.eval_lengths if limit is None or n <= limit]
    length = max(runnable, default=0)
    if length <= config.seq_len:
        return ()
    vocab = spec.model.vocab_size
    windows = length_windows(config.batch_size, config.seq_len, vocab, length, config.eval_tokens)
    rows = min(loss_rows(vocab), windows * length)
    return (Part("evaluation logits", per_token * windows * length,
                 note=f"at {windows} x {length} per forward"),
            Part("their log-probabilities", 4 * vocab * rows,
                 note=f"for {rows} positions at a time"),
            Part("attention scores", 4 * spec.model.n_heads * windows * length * length,
                 note=f"{windows} x {spec.model.n_heads} heads x {length} x {length}"))


def loss_rows(vocab_size, bytes_per_value=4):
    """Positions whose cross-entropy evaluation computes at once: EVAL_LOSS_CHUNK of logits."""
    return max(1, EVAL_LOSS_CHUNK // (vocab_size * bytes_per_value))


def training_need(spec, config, *, model=None, activations=None, copies=1, what="train",
                  prefix="train", evaluation=True):
    """What a training run of the core loop (explorer.training.loop) holds at its peak: the one
    prediction that ``explorer.train()``, the ``train`` analysis, a sweep's ``--dry-run`` and
    workers, and the memory analysis's training figures use.

    ``config`` is a :class:`explorer.TrainConfig` (resolved here if it is not). Held throughout:
    ``copies`` of the weights (parameters and buffers), the gradients, AdamW's two moments. Then
    the larger of two phases. A training step: the activations autograd saves, measured at
    batch 1 and scaled by the batch (an upper bound: the few tensors that do not grow with the
    batch are counted once per sequence; the log-probabilities of the loss are among them) and
    two gradients of the logits' size (B, T, V) at the start of backward (of the
    log-probabilities and of the logits: the loop frees the logits themselves before it). An
    evaluation forward (``evaluation``): the logits of :func:`evaluation_windows` windows and
    the log-probabilities of :func:`loss_rows` positions at a time: it does not grow with
    ``eval_tokens``. Forwards under autocast (bfloat16, float16) are predicted at float32.

    ``model``: a compact model on the meta device to read the shapes from (default: built
    here); ``activations``: bytes saved per sequence at ``config.seq_len``, if measured already
    (default: :func:`activations_per_sequence`). ``prefix`` names the settings in ``lower``
    (``train``, ``analyses.train``).
    """
    if not config.seq_len:
        config = config.resolve(spec)
    if model is None:
        from explorer.model.gpt import build_model

        model = build_model(spec, device="meta", compact=True)
    if activations is None:
        activations = activations_per_sequence(spec, config.seq_len)
    batch, seq_len, vocab = config.batch_size, config.seq_len, spec.model.vocab_size
    all_weights, trainable = parameter_bytes(model, trainable=False), parameter_bytes(model)
    parts = (Part("weights", all_weights, copies),
             Part("buffers", weight_bytes(model) - all_weights, copies),
             Part("gradients", trainable), Part("AdamW", 2 * trainable))
    per_token = logits_bytes_per_token(spec, model)
    step = (Part("activations", activations * batch, note=f"at batch {batch} x {seq_len}"),
            Part("gradients of the logits", 2 * per_token * batch * seq_len))
    phases, names = [step], ["step"]
    if evaluation:
        windows = evaluation_windows(batch, seq_len, vocab, config.eval_tokens)
        rows = min(loss_rows(vocab), windows * seq_len)
        phases.append((Part("evaluation logits", per_token * windows * seq_len,
                            note=f"at {windows} x {seq_len} per forward"),
                       Part("their log-probabilities", 4 * vocab * rows,
                            note=f"for {rows} positions at a time")))
        names.append("evaluation")
        at_lengths = lengths_phase(spec, config, model, per_token)
        if at_lengths:
            phases.append(at_lengths)
            names.append("evaluation at eval_lengths")
    lower = f"lower {prefix}.batch_size or {prefix}.seq_len" + (
        f" or {prefix}.eval_lengths" if getattr(config, "eval_lengths", None) else "")
    return Need(what, parts, lower, tuple(phases),
                tuple(names))
