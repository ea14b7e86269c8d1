"""The sweep file: one YAML document that says what to train, on which grid, with which seeds.

```yaml
base: ../specs/tiny.yaml            # one spec, or a list of specs (each a grid point of its own)
set: {model.n_layers: 2}            # optional: overrides for every point, as --set spells them
grid:                               # any spec key as --set spells it, or train.KEY
  components.positional: [learned, rope, alibi, none]   # two points at least (or two bases)
baseline: {components.positional: learned}   # deltas are against this point (default: the first)
seeds: [1, 2, 3]                    # or a count: seeds: 3 is [1, 2, 3], or as many as the
                                    #   question needs: {min: 3, max: 16, until: decided}
train: {batch_size: 16, seq_len: 128, lr: 3.0e-3, warmup: 60, schedule: cosine}
budget: {tokens: 1_228_800}         # or {steps: N} or {flops: F}
track: mlflow                       # optional: run trackers (explorer.tracking), or --track
scale: {ladder: {model.emb_dim: [64, 128, 256]}, ...}   # optional: a size ladder (.ladder)
task: {name: recall, n_pairs: 8}    # optional: what the runs learn (grid: task.n_pairs: [4, 16])
```

:func:`load_sweep` checks the document's shape and the train settings and raises
:class:`explorer.SpecError` naming the file and the key. The grid's values are checked against
the base specs when the plan is made (:func:`explorer.sweep.plan.make_plan`). No torch.
"""

from dataclasses import dataclass
from pathlib import Path


from ..errors import SpecError, did_you_mean
from ..registry.params import Checker
from ..spec.catalog import SWEEPS, resolve
from ..spec.config import SEED
from ..tracking.choice import parse_track
from ..training.settings import TrainConfig

TOP_KEYS = ("name", "description", "base", "set", "grid", "baseline", "seeds", "train", "budget",
            "track", "scale", "task")
TRAIN_PREFIX = "train."
TASK_PREFIX = "task."  # a grid key of the task's settings: task.n_pairs
BASE_KEY = "base"  # a grid coordinate (and baseline key) when the sweep has several base specs


@dataclass(frozen=True)
class SweepFile:
    source: str  # the sweep file's path
    name: str
    description: str
    bases: tuple  # the base specs' paths, as written (relative to the sweep file's folder)
    fixed: dict  # ``set:``: spec key -> value, for every point
    grid: dict  # key -> tuple of values; spec keys and ``train.KEY``
    baseline: dict  # grid key (or ``base``) -> value
    seeds: tuple
    train: TrainConfig  # the budget folded in; corpus resolved against the sweep file's folder
    train_options: dict  # the settings as given (and resolved as above): points add grid values
    shipped: bool = False  # read by name from the files explorer ships (explorer.spec.catalog)
    track: tuple = ()  # ``track:``: ((tracker name, options), ...), checked against the registry
    # when the sweep starts (explorer.tracking.choose)
    scale: object = None  # ``scale:``, a size ladder (explorer.sweep.ladder.Scale), or None
    adaptive: dict = None  # seeds: {min, max, until}: seeds added until decided (.sequential)

    @property
    def folder(self):
        return Path(self.source).parent

    def base_path(self, base):
        return self.folder / base

    def default_store(self):
        """``sweeps/positional.yaml`` -> ``sweeps/positional.sqlite``; a shipped sweep named by
        name (``explorer sweep positional``) keeps its store in the current folder, never inside
        the installed package."""
        if self.shipped:
            return Path.cwd() / Path(self.source).with_suffix(".sqlite").name
        return Path(self.source).with_suffix(".sqlite")


def _read(path):
    from ..spec.reading import read_yaml

    return read_yaml(path, "sweep file", "a sweep file is a mapping with base:, grid: and seeds:")


def _unknown(source, key, allowed):
    hint = did_you_mean(key, allowed)
    return SpecError(source, str(key), "unknown key", f"{hint}valid keys: {', '.join(allowed)}")


def _dotted_key(source, where, key):
    if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
        raise SpecError(source, where, f"{key!r} is not a dotted key",
                        "a spec key as --set spells it, e.g. components.norm or model.n_layers")
    if key in ("seed", "name", "description", "extends", "plugins") or key.startswith(
            ("analyses.", "analyses")):
        raise SpecError(source, f"{where}.{key}" if where else key,
                        "does not change what is trained",
                        "sweep model keys (model.*, components.*, tokenizer), train.* or task.*; "
                        "seeds come from seeds:")
    return key


def _bases(source, value):
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise SpecError(source, "base", f"expected a spec path or a list of them, got {value!r}",
                        "paths relative to the sweep file's folder, e.g. ../specs/tiny.yaml")
    if len(set(values)) != len(values):
        raise SpecError(source, "base", "lists a spec twice", "each base spec once")
    for base in values:
        if not (Path(source).parent / base).is_file():
            raise SpecError(source, "base", f"spec {Path(source).parent / base} does not exist",
                            "paths relative to the sweep file's folder")
    return tuple(values)


def _grid(source, value):
    if not isinstance(value, dict):
        raise SpecError(source, "grid", f"expected a mapping of key: [values], got {value!r}")
    grid = {}
    for key, values in value.items():
        key = _dotted_key(source, "grid", key)
        if not isinstance(values, list) or not values:
            raise SpecError(source, f"grid.{key}", f"expected a non-empty list of values, got "
                            f"{values!r}", f"e.g. {key}: [a, b]")
        seen = []
        for v in values:
            if v in seen:
                raise SpecError(source, f"grid.{key}", f"lists {v!r} twice", "each value once")
            seen.append(v)
        grid[key] = tuple(values)
    return grid


def _check_compares(source, doc, bases, grid):
    """A sweep compares grid points: refuse one that has a single point. Seeds are not points:
    they measure each point's spread, not a difference between points."""
    points = len(bases)
    for values in grid.values():
        points *= len(values)
    if points > 1:
        return
    problem = ("missing" if "grid" not in doc else "is empty" if not grid else
               "gives every key one value")
    raise SpecError(source, "grid", f"{problem}: one point, a sweep with nothing to compare",
                    "give a key two or more values, e.g. grid: {components.norm: [layernorm, "
                    "rmsnorm]}, or several specs as base: [a.yaml, b.yaml]")


ADAPTIVE_KEYS = ("min", "max", "until")
ADAPTIVE_EXAMPLE = "e.g. seeds: {min: 3, max: 16, until: decided}"


def _adaptive(source, value):
    """``seeds: {min: 3, max: 16, until: decided}``: seeds 1..max, of which each point runs
    the first ``min`` and more until its difference from its baseline is decided."""
    for key in value:
        if key not in ADAPTIVE_KEYS:
            raise SpecError(source, f"seeds.{key}", "unknown key",
                            f"valid keys: {', '.join(ADAPTIVE_KEYS)}; {ADAPTIVE_EXAMPLE}")
    for key in ADAPTIVE_KEYS:
        if key not in value:
            raise SpecError(source, f"seeds.{key}", "missing", ADAPTIVE_EXAMPLE)
    if value["until"] != "decided":
        raise SpecError(source, "seeds.until", f"{value['until']!r} is not a stopping rule",
                        "decided: each point's difference from its baseline")
    low, high = value["min"], value["max"]
    for key, number, least in (("min", low, 2), ("max", high, low)):
        if isinstance(number, bool) or not isinstance(number, int) or not (
                isinstance(least, int) and not isinstance(least, bool)) or number < least:
            raise SpecError(source, f"seeds.{key}", f"expected a whole number >= {least!r}, "
                            f"got {number!r}", "min >= 2 (a t statistic needs two seeds), "
                            "max >= min")
    return {"min": low, "max": high, "until": "decided"}


def _seeds(source, value):
    """``seeds: [1, 2, 3]`` (each a seed: explorer.spec.config.SEED) or a count (``seeds: 3``
    is ``[1, 2, 3]``), or ``{min, max, until}`` (seeds 1..max, :func:`_adaptive`)."""
    if isinstance(value, dict):
        return tuple(range(1, _adaptive(source, value)["max"] + 1))
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return tuple(range(1, value + 1))
    if not isinstance(value, list) or not value:
        raise SpecError(source, "seeds", f"expected a list of seeds (whole numbers 0 to 2**63-1) "
                        f"or a count, got {value!r}", "e.g. seeds: [1, 2, 3] or seeds: 3")
    checker = Checker(source)
    seeds = tuple(checker.value(SEED, seed, f"seeds[{i}]") for i, seed in enumerate(value))
    if len(set(seeds)) != len(seeds):
        raise SpecError(source, "seeds", "lists a seed twice", "each seed once")
    return seeds


def _baseline(source, value, grid, bases):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(source, "baseline", f"expected a mapping of grid key: value, got "
                        f"{value!r}", "e.g. baseline: {components.positional: learned}")
    choices = {**grid, **({BASE_KEY: bases} if len(bases) > 1 else {})}
    for key, v in value.items():
        if key not in choices:
            raise SpecError(source, f"baseline.{key}", "is not a grid key",
                            f"grid keys: {', '.join(choices) or 'none'}")
        if v not in choices[key]:
            raise SpecError(source, f"baseline.{key}", f"{v!r} is not one of its grid values",
                            f"one of {', '.join(map(repr, choices[key]))}")
    return dict(value)


def _train(source, doc, grid):
    options = doc.get("train", {})
    if not isinstance(options, dict):
        raise SpecError(source, "train", f"expected a mapping of settings, got {options!r}")
    options = dict(options)
    if "budget" in doc:
        if "budget" in options:
            raise SpecError(source, "budget", "given twice (also as train.budget)",
                            "give the budget once")
        options["budget"] = doc["budget"]
    if "task" in doc:
        if "task" in options:
            raise SpecError(source, "task", "given twice (also as train.task)",
                            "give the task once")
        options["task"] = doc["task"]
    if isinstance(options.get("task"), str):
        options["task"] = {"name": options["task"]}
    task_keys = [key for key in grid if key.startswith(TASK_PREFIX)]
    if task_keys and not isinstance(options.get("task"), dict):
        raise SpecError(source, f"grid.{task_keys[0]}", "varies a task setting, and the sweep "
                        "has no task", "say which task: task: {name: recall}")
    corpus = options.get("corpus")
    if isinstance(corpus, str) and corpus:
        options["corpus"] = str(Path(source).parent / corpus)
    config = TrainConfig.from_dict(options, source, "train")
    for key, values in grid.items():  # each train.KEY value on its own, against the rest
        if key.startswith(TRAIN_PREFIX):
            for v in values:
                TrainConfig.from_dict({**options, key[len(TRAIN_PREFIX):]: v}, source, "grid.train")
    return config, options


def with_options(sweep, **settings):
    """``sweep`` with train settings replaced for every run by command-line options (``--device
    cuda`` is ``device="cuda"``), checked as the file's are; an error names the option.
    Settings that are None are left as the file has them."""
    from dataclasses import replace

    given = {k: v for k, v in settings.items() if v is not None}
    if not given:
        return sweep
    for key, value in given.items():
        try:
            TrainConfig.from_dict({key: value}, "", "")
        except SpecError as exc:
            raise SpecError("", f"--{key}", exc.problem, exc.valid) from None
    options = {**sweep.train_options, **given}
    return replace(sweep, train=TrainConfig.from_dict(options, sweep.source, "train"),
                   train_options=options)


def load_sweep(path):
    """Read and check a sweep file (a path, or the name of a shipped one: ``"positional"``);
    return a :class:`SweepFile`."""
    by_name = not Path(path).exists()  # else resolve() found the shipped file of that name
    source = str(resolve(path, SWEEPS))
    doc = _read(source)
    for key in doc:
        if key not in TOP_KEYS:
            raise _unknown(source, key, TOP_KEYS)
    if "base" not in doc:
        raise SpecError(source, "base", "missing", "the spec (or list of specs) the grid varies")
    bases = _bases(source, doc["base"])
    name = doc.get("name", Path(source).stem)
    description = doc.get("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            raise SpecError(source, key, f"expected a string, got {value!r}")
    fixed = doc.get("set", {})
    if not isinstance(fixed, dict):
        raise SpecError(source, "set", f"expected a mapping of key: value, got {fixed!r}",
                        "e.g. set: {model.n_layers: 2}")
    for key in fixed:
        if _dotted_key(source, "set", key).startswith(TRAIN_PREFIX):
            raise SpecError(source, f"set.{key}", "is a train setting",
                            f"put it under train: as {key[len(TRAIN_PREFIX):]}")
    grid = _grid(source, doc.get("grid", {}))
    scale = None
    if "scale" in doc:  # a ladder of sizes: one variant is enough, its fit is the answer
        from .ladder import parse_scale

        train_doc = doc.get("train")
        scale = parse_scale(source, doc["scale"], fixed, grid, "budget" in doc or (
            isinstance(train_doc, dict) and "budget" in train_doc))
    else:
        _check_compares(source, doc, bases, grid)
    overlap = sorted(set(fixed) & set(grid))
    if overlap:
        raise SpecError(source, f"set.{overlap[0]}", "is also a grid key", "vary it or fix it")
    if "seeds" not in doc:
        raise SpecError(source, "seeds", "missing", "e.g. seeds: [1, 2, 3]")
    train, options = _train(source, doc, grid)
    return SweepFile(
        source=source, name=name, description=description, bases=bases, fixed=dict(fixed),
        grid=grid, baseline=_baseline(source, doc.get("baseline"), grid, bases),
        seeds=_seeds(source, doc["seeds"]), train=train, train_options=options, shipped=by_name,
        track=parse_track(doc.get("track"), source),
        scale=scale, adaptive=_adaptive(source, doc["seeds"]) if isinstance(
            doc["seeds"], dict) else None)
