"""The plan of a sweep: grid points (base specs x grid values), their baselines, and the runs
(points x seeds), each keyed by a hash of what determines its result.

A run's key covers the resolved spec (name, description, seed and analyses left out: they do
not change what is trained), the run's seed, the resolved train settings (threads left out), the
corpus's content digest, and the explorer and torch versions. The same run in an edited sweep
file keeps its key, so its stored result still counts; a changed setting makes a new key.

No torch is imported, except to turn a ``{flops: F}`` budget into steps.
"""

import hashlib
import importlib.metadata
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..training.corpus import digest, load_corpus
from ..errors import SpecError
from ..spec.loading import load_spec
from ..training.settings import TrainConfig
from .sweepfile import BASE_KEY, TASK_PREFIX, TRAIN_PREFIX

KEY_LENGTH = 20  # hex digits of sha256: 80 bits
NOT_IN_KEY = ("name", "description", "seed", "analyses", "plugins")
# Train settings added after stores existed, left out of a run's key at their default, so that
# the runs already stored keep their keys.
ADDED_SETTINGS = {"eval_lengths": []}


@dataclass(frozen=True)
class Point:
    index: int
    coords: dict  # grid key (and ``base`` when there are several) -> value
    label: str  # "positional=rope, n_layers=8"
    spec: object  # the resolved explorer.Spec
    train: TrainConfig  # resolved: seq_len and steps fixed
    corpus_digest: str
    size: dict = None  # on a size ladder (scale:): {"params", "flops", "tokens"} of its runs


@dataclass(frozen=True)
class Run:
    key: str
    point: Point
    seed: int

    def task(self, threads):
        """What a worker needs to train this run, as plain data (picklable, JSON-able)."""
        spec = {**self.point.spec.to_dict(), "seed": self.seed}
        return {"key": self.key, "label": self.point.label, "seed": self.seed, "spec": spec,
                "source": str(Path(self.point.spec.source).resolve()),
                "train": {**self.point.train.to_dict(), "threads": threads},
                "corpus_digest": self.point.corpus_digest}


@dataclass
class Plan:
    sweep: object  # the SweepFile
    points: list
    baselines: dict  # point index -> its baseline's point index (itself for a baseline)
    runs: list  # seed-major: every point's first seed, then every point's second seed, ...
    versions: dict = field(default_factory=dict)
    # Adaptive seeds: point index -> {"seeds", "verdict", "bayes_factor"}, the runs above
    # being those the schedule wants now (explorer.sweep.sequential); None otherwise
    schedule: dict = None
    _runs_by_point: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def columns(self):
        """The grid coordinates, in order: the config columns of every table."""
        return list(self.points[0].coords) if self.points else []

    def runs_of(self, point):
        """The point's runs, in seed order. From an index built on first use (a plan's runs do
        not change once made): a scan of every run per point costs a 10,000-run report 5
        million comparisons."""
        if not self._runs_by_point:
            for run in self.runs:
                self._runs_by_point.setdefault(run.point.index, []).append(run)
        return list(self._runs_by_point.get(point.index, ()))


def versions():
    """The explorer and torch versions a result depends on (no torch import)."""
    from .. import __version__

    try:
        torch = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch = "none"
    return {"explorer": __version__, "torch": torch}


def run_key(spec_dict, seed, train, corpus_digest, versions):
    """The run's identity: a stable hash of what determines its result."""
    identity = {
        "spec": {k: v for k, v in spec_dict.items() if k not in NOT_IN_KEY},
        "seed": seed,
        "train": {k: v for k, v in train.items() if k not in ("threads", "corpus")
                  and not (k in ADDED_SETTINGS and v == ADDED_SETTINGS[k])},
        "corpus": corpus_digest,
        **versions,
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def yaml_value(value):
    """``value`` as the YAML text of a ``--set KEY=VALUE`` override that reads back the same."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**16)
    return text.removesuffix("\n...\n").strip()


def short_names(keys):
    """``components.positional`` -> ``positional``, unless two keys would share a name."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def show(value):
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def point_label(coords):
    names = short_names(list(coords))
    return ", ".join(f"{names[k]}={Path(v).stem if k == BASE_KEY else show(v)}"
                     for k, v in coords.items()) or "base"


class _Planner:
    def __init__(self, sweep, plugins):
        self.sweep, self.plugins = sweep, plugins
        self.spec_keys = [k for k in sweep.grid if not k.startswith((TRAIN_PREFIX, TASK_PREFIX))]
        self.train_keys = [k for k in sweep.grid if k.startswith(TRAIN_PREFIX)]
        self.task_keys = [k for k in sweep.grid if k.startswith(TASK_PREFIX)]
        self.digests = {}
        self.loaded = {}  # (base, overrides) -> Spec: points that differ only in train.* share one
        self.rungs = sweep.scale.rungs() if sweep.scale else [({}, {})]

    def load(self, base, overrides, where=None):
        """The base spec with ``set:`` and ``overrides`` (key -> value) applied.

        Errors are named in the sweep file: with one override (``where`` None) it is the cause,
        as the base spec and ``set:`` were checked alone first; with several, the point is.
        """
        given = {**self.sweep.fixed, **overrides}
        texts = [f"{k}={yaml_value(v)}" for k, v in given.items()]
        if (base, *texts) in self.loaded:
            return self.loaded[(base, *texts)]
        try:
            spec = load_spec(self.sweep.base_path(base), overrides=texts, plugins=self.plugins)
        except SpecError as exc:
            if not overrides:  # the base spec or set: alone
                origin = str(exc.source).removeprefix("--set ")
                if origin not in self.sweep.fixed:
                    raise  # the base spec itself is broken: its own message names it
                overrides, sweep_key = {origin: self.sweep.fixed[origin]}, f"set.{origin}"
            elif where is None:
                sweep_key = f"grid.{next(iter(overrides))}"
            else:
                raise SpecError(self.sweep.source, "grid", f"point {where}: {exc.key}: "
                                f"{exc.problem}", exc.valid) from None
            key, value = next(iter(overrides.items()))
            at = f"{exc.key}: " if exc.key and exc.key != key else ""
            raise SpecError(self.sweep.source, sweep_key, f"{value!r}: {at}{exc.problem}",
                            exc.valid) from None
        self.loaded[(base, *texts)] = spec
        return spec

    def corpus_digest(self, path):
        if path not in self.digests:
            self.digests[path] = digest(load_corpus(path)[0])
        return self.digests[path]

    def check_values(self):
        """Each grid value on its own against each base, so an error names the key and value;
        then each rung of a size ladder on its own."""
        for base in self.sweep.bases:
            self.load(base, {})
            for key in self.spec_keys:
                for value in self.sweep.grid[key]:
                    self.load(base, {key: value})
            for coords, overrides in self.rungs if self.sweep.scale else ():
                try:
                    self.load(base, overrides, point_label(coords))
                except SpecError as exc:
                    raise SpecError(exc.source, "scale", exc.problem.replace("point ", "rung ", 1),
                        exc.valid) from None

    def points(self):
        grid = self.sweep.grid
        bases = self.sweep.bases
        points = []
        for base, (rung, overrides), combo in itertools.product(
                bases, self.rungs, itertools.product(*grid.values())):
            coords = {BASE_KEY: base} if len(bases) > 1 else {}
            coords.update(rung)
            coords.update(zip(grid, combo))
            label = point_label(coords)
            spec = self.load(base, {**overrides, **{k: coords[k] for k in self.spec_keys}},
                             label)
            options = {**self.sweep.train_options,
                       **{k[len(TRAIN_PREFIX):]: coords[k] for k in self.train_keys}}
            if self.task_keys:  # task.n_pairs: 16 -> the task's n_pairs
                options["task"] = {**options["task"], **{
                    k[len(TASK_PREFIX):]: coords[k] for k in self.task_keys}}
            size = None
            if self.sweep.scale:
                options, counts = self.sized(options, spec)
            train = self.train_config(options, spec, label)
            if self.sweep.scale:
                from .ladder import run_size

                size = run_size(spec, train, counts if counts["seq_len"] == train.seq_len
                                else None)
            points.append(Point(len(points), coords, label, spec, train,
                                self.corpus_digest(train.corpus), size))
        return points

    def sized(self, options, spec):
        """A ladder point's train options, with ``tokens_per_param`` made a token budget of
        its non-embedding parameters; and its model's counts."""
        from .ladder import model_counts

        seq_len = options.get("seq_len") or spec.model.context_length
        counts = {**model_counts(spec, seq_len), "seq_len": seq_len}
        per_param = self.sweep.scale.tokens_per_param
        if per_param:
            tokens = max(1, round(per_param * counts["nonembedding_parameters"]))
            options = {**options, "budget": {"tokens": tokens}}
        return options, counts

    def train_config(self, options, spec, label):
        try:
            # A task's errors name it as the sweep file spells it: task.n_pairs
            return TrainConfig.from_dict(options, self.sweep.source, "train").resolve(
                spec, self.sweep.source, "train", task_key="task")
        except SpecError as exc:
            where = f"at point {label}: " if len(self.sweep.grid) or len(self.sweep.bases) > 1 \
                else ""
            raise SpecError(exc.source, exc.key, f"{where}{exc.problem}", exc.valid) from None

    def baselines(self, points):
        # A ladder's baseline is the same variant at the same rung: rungs are not compared
        ladder = self.sweep.scale.keys if self.sweep.scale else ()
        wanted = self.sweep.baseline or {k: v for k, v in points[0].coords.items()
                                         if k not in ladder}
        by_coords = {json.dumps(p.coords, sort_keys=True): p.index for p in points}
        return {p.index: by_coords[json.dumps({**p.coords, **wanted}, sort_keys=True)]
                for p in points}


def make_plan(sweep, plugins=None):
    """Expand ``sweep`` (a :class:`SweepFile`) into points and runs; raise SpecError on a grid
    value a base spec refuses, naming the sweep file, the grid key and the value."""
    from ..registry.plugin_manager import get_plugin_manager

    planner = _Planner(sweep, plugins or get_plugin_manager())
    planner.check_values()
    points = planner.points()
    found = versions()
    # Each point's spec and settings as plain data once, not once per seed (to_dict deep-copies)
    plain = [(p.spec.to_dict(), p.train.to_dict()) for p in points]
    runs, owners = [], {}
    for seed in sweep.seeds:
        for point, (spec, train) in zip(points, plain):
            key = run_key({**spec, "seed": seed}, seed, train, point.corpus_digest, found)
            if key in owners:
                raise SpecError(sweep.source, "grid", f"points {owners[key]} and {point.label} "
                                "train the same model with the same settings",
                                "vary keys that change the model or its training")
            owners[key] = point.label
            runs.append(Run(key, point, seed))
    return Plan(sweep, points, planner.baselines(points), runs, found)
