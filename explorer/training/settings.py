"""The settings of a training run: one typed object, validated once, errors naming the key.

``TrainConfig.from_dict(options, source, prefix)`` checks every key, type and range and raises
:class:`explorer.SpecError` naming ``<source>: <prefix>.<key>``; everything after it trusts the
object. ``config.resolve(spec)`` fills what depends on the model (``seq_len`` 0 is the context
length; a budget becomes a number of steps). This module imports no torch.
"""

import math
from dataclasses import asdict, dataclass, field, replace

from explorer.errors import ParamError, did_you_mean
from explorer.registry.params import Checker, Param, option, params_of
from explorer.training.devices import DEVICE_NAMES, DTYPE_NAMES, check_device_name

SCHEDULES = ("constant", "cosine", "linear")
BUDGET_UNITS = ("steps", "tokens", "flops")
ONE_THREAD_BELOW = 5_000_000  # parameters: below this, per-op threading overhead dominates


@dataclass(frozen=True)
class TrainConfig:
    """One training run's settings. The defaults are the ``train`` analysis's. Each field is an
    option (:func:`explorer.registry.params.option`): its Param is the ``train`` analysis's
    parameter and checks the value wherever the settings are read."""

    steps: int = option("optimizer steps (a budget, when given, sets them instead)", 200, min=1)
    batch_size: int = option("sequences per step", 8, min=1)
    seq_len: int = option("tokens per sequence (0: the context length)", 0, min=0)
    lr: float = option("peak AdamW learning rate", 1e-3, min=0, exclusive_min=True)
    min_lr: float = option(
        "the learning rate the cosine or linear schedule decays to at the last step", 0.0, min=0)
    warmup: int = option("steps of linear warmup from 0 to lr", 0, min=0)
    schedule: str = option("the learning rate after warmup", "constant", choices=SCHEDULES)
    weight_decay: float = option("AdamW weight decay (the book's 0.1)", 0.1, min=0)
    grad_clip: float = option("clip the global gradient norm to this (0: no clipping)", 0.0,
                              min=0)
    eval_every: int = option("steps between evaluations", 50, min=1)
    eval_every_tokens: int = option(
        "training tokens between evaluations, so curves of different batch sizes line up "
        "(0: use eval_every)", 0, min=0)
    eval_tokens: int = option(
        "tokens of each split the curve is measured on (0: the whole split)", 16384, min=0)
    eval_lengths: list = option(
        "sequence lengths at which the final model's validation loss (a task's: accuracy, on "
        "its validation set made at that length) is also measured, past seq_len and "
        "model.context_length too (length extrapolation), e.g. [128, 256, 512]",
        factory=list)
    corpus: str = option("a UTF-8 text file (default: the standard library's pydoc_data.topics)",
                         "")
    threads: int = option(
        "CPU threads while training (0: one below 5M parameters, where threading overhead "
        "dominates; else torch's setting)", 0, min=0)
    device: str = option(
        "where to train: cpu, cuda, cuda:N, mps, or auto (cuda, else mps, else cpu)", "cpu")
    dtype: str = option(
        "float32, or bfloat16 / float16 mixed precision: autocast forwards, float32 master "
        "weights and AdamW state (float16 with a gradient scaler)", "float32",
        choices=DTYPE_NAMES)
    compile: bool = option(
        "wrap the model in torch.compile for the training steps (pays off on long runs: "
        "benchmarks/README.md)", False)
    budget: dict = option(
        "{steps: N}, {tokens: N} or {flops: F} (training FLOPs, 3 x forward): sets the steps, "
        "so runs of different cost get the same budget", factory=dict)
    task: dict = option(
        "what the run learns and how it is scored: a task name or {name: TASK, PARAM: value} "
        "(explorer plugins --kind task); none: language modelling on the corpus", factory=dict)
    # The keys the user gave (not a setting): steps given beside a budget must agree with it.
    given: frozenset = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def params(cls):
        """The settings as :class:`explorer.Param` (the ``train`` analysis's options), in order."""
        return params_of(cls)

    @classmethod
    def from_dict(cls, options, source="", prefix="train"):
        """Validate ``options`` (a mapping of settings) into a TrainConfig, or raise SpecError."""
        return _check_settings(cls, options, source, prefix)

    @classmethod
    def from_options(cls, options, source="", prefix="analyses.train"):
        """Like :meth:`from_dict` for options that arrive merged over the defaults (an
        analysis's): a value equal to its default counts as not given."""
        defaults = {p.name: p.default for p in cls.params()}
        return cls.from_dict({k: v for k, v in options.items() if defaults.get(k, v) != v or
                              k not in defaults}, source, prefix)

    def to_dict(self):
        """The settings as plain data. No task (the corpus) is left out, so the settings of
        runs made before tasks existed, and their sweep keys, are unchanged."""
        out = asdict(self)
        out.pop("given")
        if not out["task"]:
            out.pop("task")
        return out

    def resolve(self, spec, source="", prefix="train", task_key=None):
        """This config with ``seq_len`` and ``steps`` fixed for ``spec``'s model.

        A ``{flops: F}`` budget needs the training FLOPs per token at ``seq_len``: computed from
        the spec on the meta device (imports torch). A task is checked against the registry (its
        parameters) and the spec (its vocabulary and length); ``task_key`` names it in errors
        (default ``<prefix>.task``); its sequences' length is ``seq_len``.
        """
        checker = Checker(source or spec.source)

        def error(key, problem, valid):
            return checker.error(_key(prefix, key), problem, valid)

        context = spec.model.context_length
        task, seq_len = self._resolve_task(spec, checker, task_key or _key(prefix, "task"))
        seq_len = seq_len or self.seq_len or context
        if task and self.seq_len and self.seq_len != seq_len:
            raise error("seq_len", f"{self.seq_len} disagrees with task {task['name']!r}, whose "
                        f"sequences are {seq_len} tokens", "drop train.seq_len: the task sets it")
        if seq_len > context:
            raise error("seq_len", f"{seq_len} is longer than model.context_length {context}",
                        f"1..{context}, or 0 for the context length")
        steps = self.steps
        if self.budget:
            unit, amount = next(iter(self.budget.items()))
            flops_per_token = None
            if unit == "flops":
                from explorer.measure.costs import static_costs

                flops_per_token = static_costs(spec, seq_len)["training_flops_per_token"]
            steps = budget_steps(unit, amount, self.batch_size * seq_len, flops_per_token)
            if steps < 1:
                raise error("budget", f"{{{unit}: {amount:g}}} is less than one step of "
                            f"{self.batch_size} x {seq_len} tokens", f"at least "
                            f"{one_step(unit, self.batch_size * seq_len, flops_per_token):g}")
            if "steps" in self.given and steps != self.steps:
                raise error("steps", f"{self.steps} disagrees with budget {{{unit}: "
                            f"{amount:g}}}, which gives {steps} steps",
                            "drop train.steps: the budget sets each run's steps")
        if self.warmup >= steps:
            raise error("warmup", f"{self.warmup} warmup steps of a {steps}-step run",
                        "fewer warmup steps than steps")
        return replace(self, seq_len=seq_len, steps=steps, task=task)

    def _resolve_task(self, spec, checker, key):
        """The task's settings merged over its defaults and its sequence length, checked against
        the registry and the spec; ``({}, 0)`` for the corpus (``task: text`` included, so its
        runs are the corpus runs they always were)."""
        if not self.task:
            return {}, 0
        from explorer.training.tasks import check_task, task_fits

        name, params, task = check_task(self.task, spec.plugin_manager, checker, key)
        if getattr(task, "uses_corpus", False):
            return {}, 0
        task_fits(task, name, spec.model, checker, key)
        return {"name": name, **params}, task.seq_len_needed

    def threads_for(self, parameters, current):
        """The thread count to train with: the setting, or the automatic choice."""
        if self.threads:
            return self.threads
        return 1 if parameters < ONE_THREAD_BELOW else current


def one_step(unit, tokens_per_step, flops_per_token):
    """What one optimizer step costs in ``unit``."""
    return {"steps": 1, "tokens": tokens_per_step,
            "flops": (flops_per_token or 0) * tokens_per_step}[unit]


def budget_steps(unit, amount, tokens_per_step, flops_per_token=None):
    """Whole steps that fit in the budget (rounded down: no run exceeds its budget)."""
    return int(amount // one_step(unit, tokens_per_step, flops_per_token))


def learning_rate(step, config, steps):
    """The learning rate of optimizer step ``step`` (1-based) in a run of ``steps`` steps.

    Warmup rises linearly to ``lr`` at step ``warmup``; then ``constant`` stays there,
    ``cosine`` follows half a cosine down to ``min_lr`` at the last step, ``linear`` a line.
    """
    lr, low, warmup = config.lr, config.min_lr, config.warmup
    if step <= warmup:
        return lr * step / warmup
    if config.schedule == "constant":
        return lr
    progress = (step - warmup) / (steps - warmup)  # (0, 1]: 1 at the last step
    if config.schedule == "cosine":
        return low + 0.5 * (lr - low) * (1 + math.cos(math.pi * progress))
    return lr - (lr - low) * progress


def eval_steps(steps, tokens_per_step, eval_every, eval_every_tokens=0):
    """The steps after which the curve is measured (step 0, before training, always is).

    Every ``eval_every`` steps, or, with ``eval_every_tokens``, the first step at which the
    tokens seen reach each multiple of it; and the last step.
    """
    if eval_every_tokens:
        chosen = {math.ceil(k * eval_every_tokens / tokens_per_step)
                  for k in range(1, steps * tokens_per_step // eval_every_tokens + 1)}
    else:
        chosen = set(range(eval_every, steps + 1, eval_every))
    return sorted(chosen | {steps})


def _key(prefix, key):
    return f"{prefix}.{key}" if prefix else key


def _check_settings(cls, options, source, prefix):
    """``options`` checked into a ``cls``: each setting by its Param (the one engine,
    :class:`explorer.registry.params.Checker`), then what a Param cannot say: a budget's shape, a
    device name, and the rules across settings."""
    checker = Checker(source)
    if isinstance(options, dict) and isinstance(options.get("task"), str):
        options = {**options, "task": {"name": options["task"]}}  # task: recall
    values = checker.fields(cls, options, prefix, noun="setting")
    if values.get("task") and not isinstance(values["task"].get("name"), str):
        raise checker.error(_key(prefix, "task.name"), "missing",
                            "the task's name, e.g. task: {name: recall, n_pairs: 8}")
    if "budget" in values:
        values["budget"] = _budget(checker, values["budget"], _key(prefix, "budget"))
    if "device" in values and check_device_name(values["device"]) is None:
        raise checker.error(_key(prefix, "device"), f"{values['device']!r} is not a device",
                            f"{', '.join(DEVICE_NAMES[:-1])} or {DEVICE_NAMES[-1]}")
    if "eval_every" in values and values.get("eval_every_tokens"):
        raise checker.error(_key(prefix, "eval_every_tokens"), "given together with eval_every",
                            "evaluate every N steps or every N tokens, not both")
    if "eval_lengths" in values:
        values["eval_lengths"] = _lengths(checker, values["eval_lengths"],
                                          _key(prefix, "eval_lengths"))
    config = cls(**values, given=frozenset(values))
    if config.min_lr > config.lr:
        raise checker.error(_key(prefix, "min_lr"), f"{config.min_lr:g} is above lr "
                            f"{config.lr:g}", "the schedule decays from lr down to min_lr")
    if not config.budget and "warmup" in values and config.warmup >= config.steps:
        raise checker.error(_key(prefix, "warmup"), f"{config.warmup} warmup steps of a "
                            f"{config.steps}-step run", "fewer warmup steps than steps")
    return config


# A budget's amount: whole steps or tokens, or a number of FLOPs.
_BUDGET_AMOUNTS = {"steps": Param("steps", int, None, min=1),
                   "tokens": Param("tokens", int, None, min=1),
                   "flops": Param("flops", float, None, min=0, exclusive_min=True)}


def _budget(checker, value, key):
    shape = "{steps: N}, {tokens: N} or {flops: F}"
    if len(value) != 1:
        raise checker.error(key, f"expected one of {shape}, got {value!r}")
    (unit, amount), = value.items()
    if unit not in BUDGET_UNITS:
        hint = did_you_mean(unit, BUDGET_UNITS)
        raise checker.error(f"{key}.{unit}", "unknown budget unit", f"{hint}{shape}")
    if amount is None:
        raise checker.error(f"{key}.{unit}", "missing its amount", shape)
    checked = checker.value(_BUDGET_AMOUNTS[unit], amount, f"{key}.{unit}")
    if unit == "flops" and isinstance(amount, int) and not isinstance(amount, bool):
        checked = amount  # FLOPs given whole stay whole: a sweep's run keys hash the budget
    return {unit: checked}


_LENGTH = Param("length", int, 0, min=1)  # the default is never used: a length is given


def _lengths(checker, value, key):
    """``eval_lengths``: whole positive lengths, each once, in increasing order. An error
    names the item at the key (``train.eval_lengths: item 1: ...``), so that ``--set KEY=...``
    reads as one key too."""
    lengths = []
    for i, length in enumerate(value):
        try:
            lengths.append(_LENGTH.check(length))
        except ParamError as exc:
            raise checker.error(key, f"item {i}: {exc.problem}",
                                "a list of sequence lengths such as [128, 256, 512]") from None
    if len(set(lengths)) != len(lengths):
        repeated = next(n for n in lengths if lengths.count(n) > 1)
        raise checker.error(key, f"{repeated} is listed twice", "each length once")
    return sorted(lengths)
