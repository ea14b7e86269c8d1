"""The settings of a training run: one typed object, validated once, errors naming the key.

``TrainConfig.from_dict(options, source, prefix)`` checks every key, type and range and raises
:class:`explorer.SpecError` naming ``<source>: <prefix>.<key>``; everything after it trusts the
object. ``config.resolve(spec)`` fills what depends on the model (``seq_len`` 0 is the context
length; a budget becomes a number of steps). This module imports no torch.
"""

import math
from dataclasses import asdict, dataclass, field, fields, replace

from explorer.training.devices import DEVICE_NAMES, DTYPE_NAMES, check_device_name
from explorer.errors import SpecError, did_you_mean

SCHEDULES = ("constant", "cosine", "linear")
BUDGET_UNITS = ("steps", "tokens", "flops")
ONE_THREAD_BELOW = 5_000_000  # parameters: below this, per-op threading overhead dominates


def _help(text, minimum=None, choices=(), above=None):
    """A setting's metadata: its help line and what values are valid (``minimum`` inclusive,
    ``above`` exclusive)."""
    return {"help": text, "min": minimum, "above": above, "choices": choices}


@dataclass(frozen=True)
class TrainConfig:
    """One training run's settings. The defaults are the ``train`` analysis's."""

    steps: int = field(default=200, metadata=_help(
        "optimizer steps (a budget, when given, sets them instead)", 1))
    batch_size: int = field(default=8, metadata=_help("sequences per step", 1))
    seq_len: int = field(default=0, metadata=_help(
        "tokens per sequence (0: the context length)", 0))
    lr: float = field(default=1e-3, metadata=_help("peak AdamW learning rate", above=0.0))
    min_lr: float = field(default=0.0, metadata=_help(
        "the learning rate the cosine or linear schedule decays to at the last step", 0.0))
    warmup: int = field(default=0, metadata=_help(
        "steps of linear warmup from 0 to lr", 0))
    schedule: str = field(default="constant", metadata=_help(
        "the learning rate after warmup", choices=SCHEDULES))
    weight_decay: float = field(default=0.1, metadata=_help("AdamW weight decay (the book's 0.1)",
                                                            0.0))
    grad_clip: float = field(default=0.0, metadata=_help(
        "clip the global gradient norm to this (0: no clipping)", 0.0))
    eval_every: int = field(default=50, metadata=_help("steps between evaluations", 1))
    eval_every_tokens: int = field(default=0, metadata=_help(
        "training tokens between evaluations, so curves of different batch sizes line up "
        "(0: use eval_every)", 0))
    eval_tokens: int = field(default=16384, metadata=_help(
        "tokens of each split the curve is measured on (0: the whole split)", 0))
    corpus: str = field(default="", metadata=_help(
        "a UTF-8 text file (default: the standard library's pydoc_data.topics)"))
    threads: int = field(default=0, metadata=_help(
        "CPU threads while training (0: one below 5M parameters, where threading overhead "
        "dominates; else torch's setting)", 0))
    device: str = field(default="cpu", metadata=_help(
        "where to train: cpu, cuda, cuda:N, mps, or auto (cuda, else mps, else cpu)"))
    dtype: str = field(default="float32", metadata=_help(
        "float32, or bfloat16 / float16 mixed precision: autocast forwards, float32 master "
        "weights and AdamW state (float16 with a gradient scaler)", choices=DTYPE_NAMES))
    compile: bool = field(default=False, metadata=_help(
        "wrap the model in torch.compile for the training steps (pays off on long runs: "
        "benchmarks/README.md)"))
    budget: dict = field(default_factory=dict, metadata=_help(
        "{steps: N}, {tokens: N} or {flops: F} (training FLOPs, 3 x forward): sets the steps, "
        "so runs of different cost get the same budget"))
    # The keys the user gave (not a setting): steps given beside a budget must agree with it.
    given: frozenset = field(default=frozenset(), compare=False, repr=False,
                             metadata={"internal": True})

    @classmethod
    def settings(cls):
        """The fields a user can set, in order."""
        return [f for f in fields(cls) if not f.metadata.get("internal")]

    @classmethod
    def params(cls):
        """The settings as :class:`explorer.Param` (for the ``train`` analysis's options)."""
        from explorer.registry.components import Param

        def bounds(f):
            low, above = f.metadata["min"], f.metadata["above"]
            low, above = (int(v) if isinstance(v, float) and v.is_integer() else v
                          for v in (low, above))
            if above is not None:
                return {"min": above, "exclusive_min": True}
            return {"min": low} if low is not None else {}

        return tuple(Param(f.name, f.type, f.default_factory() if f.name == "budget" else
                           f.default, f.metadata["help"], f.metadata["choices"], **bounds(f))
                     for f in cls.settings())

    @classmethod
    def from_dict(cls, options, source="", prefix="train"):
        """Validate ``options`` (a mapping of settings) into a TrainConfig, or raise SpecError."""
        return _Check(source, prefix).config(cls, options)

    @classmethod
    def from_options(cls, options, source="", prefix="analyses.train"):
        """Like :meth:`from_dict` for options that arrive merged over the defaults (an
        analysis's): a value equal to its default counts as not given."""
        defaults = {p.name: p.default for p in cls.params()}
        return cls.from_dict({k: v for k, v in options.items() if defaults.get(k, v) != v or
                              k not in defaults}, source, prefix)

    def to_dict(self):
        """The settings as plain data."""
        out = asdict(self)
        out.pop("given")
        return out

    def resolve(self, spec, source="", prefix="train"):
        """This config with ``seq_len`` and ``steps`` fixed for ``spec``'s model.

        A ``{flops: F}`` budget needs the training FLOPs per token at ``seq_len``: computed from
        the spec on the meta device (imports torch).
        """
        check = _Check(source or spec.source, prefix)
        context = spec.model.context_length
        seq_len = self.seq_len or context
        if seq_len > context:
            raise check.error("seq_len", f"{seq_len} is longer than model.context_length "
                              f"{context}", f"1..{context}, or 0 for the context length")
        steps = self.steps
        if self.budget:
            unit, amount = next(iter(self.budget.items()))
            flops_per_token = None
            if unit == "flops":
                from explorer.measure.costs import static_costs

                flops_per_token = static_costs(spec, seq_len)["training_flops_per_token"]
            steps = budget_steps(unit, amount, self.batch_size * seq_len, flops_per_token)
            if steps < 1:
                raise check.error("budget", f"{{{unit}: {amount:g}}} is less than one step of "
                                  f"{self.batch_size} x {seq_len} tokens",
                                  f"at least "
                                  f"{one_step(unit, self.batch_size * seq_len, flops_per_token):g}")
            if "steps" in self.given and steps != self.steps:
                raise check.error("steps", f"{self.steps} disagrees with budget {{{unit}: "
                                  f"{amount:g}}}, which gives {steps} steps",
                                  "drop train.steps: the budget sets each run's steps")
        if self.warmup >= steps:
            raise check.error("warmup", f"{self.warmup} warmup steps of a {steps}-step run",
                              "fewer warmup steps than steps")
        return replace(self, seq_len=seq_len, steps=steps)

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


class _Check:
    """Validation of one settings mapping; errors read ``<source>: <prefix>.<key>: ...``."""

    def __init__(self, source, prefix):
        self.source, self.prefix = source, prefix

    def error(self, key, problem, valid=None):
        return SpecError(self.source, f"{self.prefix}.{key}" if self.prefix else key, problem,
                         valid)

    def config(self, cls, options):
        if not isinstance(options, dict):
            raise SpecError(self.source, self.prefix, f"expected a mapping of settings, got "
                            f"{options!r}")
        settings = {f.name: f for f in cls.settings()}
        values = {}
        for key, value in options.items():
            if key not in settings:
                hint = did_you_mean(key, settings)
                raise self.error(str(key), "unknown setting",
                                 f"{hint}valid: {', '.join(settings)}")
            values[key] = self.value(settings[key], value)
        if "eval_every" in values and values.get("eval_every_tokens"):
            raise self.error("eval_every_tokens", "given together with eval_every",
                             "evaluate every N steps or every N tokens, not both")
        config = cls(**values, given=frozenset(values))
        if config.min_lr > config.lr:
            raise self.error("min_lr", f"{config.min_lr:g} is above lr {config.lr:g}",
                             "the schedule decays from lr down to min_lr")
        if not config.budget and "warmup" in values and config.warmup >= config.steps:
            raise self.error("warmup", f"{config.warmup} warmup steps of a {config.steps}-step "
                             "run", "fewer warmup steps than steps")
        return config

    def value(self, f, value):
        if f.name == "budget":
            return self.budget(value)
        if f.name == "device":
            return self.device(value)
        if f.type in (int, float):
            value = _as_number(value)
        if f.type is int and isinstance(value, float) and value.is_integer():
            value = int(value)  # 1.2e6 tokens: YAML reads a float (or a string)
        ok = isinstance(value, f.type) and (f.type is bool or not isinstance(value, bool))
        if f.type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok or (f.type is float and not math.isfinite(value)):
            expected = "a number" if f.type is float else f.type.__name__
            raise self.error(f.name, f"expected {expected}, got {value!r}", f.metadata["help"])
        low, above, choices = f.metadata["min"], f.metadata["above"], f.metadata["choices"]
        if choices and value not in choices:
            raise self.error(f.name, f"{value!r} is not a {f.name}",
                             f"one of {', '.join(choices)}")
        if low is not None and value < low:
            raise self.error(f.name, f"must be >= {low:g}, got {value:g}", f.metadata["help"])
        if above is not None and value <= above:
            raise self.error(f.name, f"must be > {above:g}, got {value:g}", f.metadata["help"])
        return value

    def budget(self, value):
        shape = "{steps: N}, {tokens: N} or {flops: F}"
        if not isinstance(value, dict) or len(value) != 1:
            raise self.error("budget", f"expected one of {shape}, got {value!r}")
        (unit, amount), = value.items()
        if unit not in BUDGET_UNITS:
            hint = did_you_mean(unit, BUDGET_UNITS)
            raise self.error(f"budget.{unit}", "unknown budget unit", f"{hint}{shape}")
        amount = _as_number(amount)
        if unit != "flops" and isinstance(amount, float) and amount.is_integer():
            amount = int(amount)
        kinds = (int, float) if unit == "flops" else (int,)
        if isinstance(amount, bool) or not isinstance(amount, kinds) or not amount > 0 or (
                isinstance(amount, float) and not math.isfinite(amount)):
            raise self.error(f"budget.{unit}", f"expected a positive "
                             f"{'number' if unit == 'flops' else 'whole number'}, got {amount!r}")
        return {unit: amount}

    def device(self, value):
        if check_device_name(value) is None:
            raise self.error("device", f"{value!r} is not a device",
                             f"{', '.join(DEVICE_NAMES[:-1])} or {DEVICE_NAMES[-1]}")
        return value


def _as_number(value):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string: read it as the number it is."""
    if isinstance(value, str):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return value
    return value
