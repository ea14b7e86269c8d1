"""``explorer probe``: a capability profile of specs on a suite of synthetic tasks, as a sweep.

A suite (``suites/mad.yaml``, :func:`load_suite`) names tasks, each with its settings and one of
them given as a list: the difficulty levels; MAD's learning rate x weight decay grid; seeds;
train settings and a budget:

```yaml
name: mad
seeds: 3
lr: [1.0e-3, 3.0e-3]
weight_decay: [0.0, 0.1]
train: {batch_size: 32, eval_every: 50, eval_tokens: 2048}
budget: {steps: 100}
tasks:
  recall: {n_keys: 8, n_values: 8, n_pairs: [2, 4, 8]}   # n_pairs: the difficulty
```

A probe is a sweep, not a second system: per task one :class:`~.sweepfile.SweepFile` whose bases
are the probed specs and whose grid is ``task.KNOB x train.lr x train.weight_decay``, planned by
:func:`~.plan.make_plan`; the plans are joined into one :class:`~.plan.Plan`, so one driver runs
them on the sweep's executors into one store, and resumes like any sweep. The profile
(:mod:`.probe_report`) reduces the store's rows. No torch.
"""

from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import SpecError
from ..spec.catalog import SPECS, SUITES, resolve
from .plan import Plan, Run, make_plan, versions
from .sweepfile import BASE_KEY, SweepFile, _seeds, _train

SUITE_KEYS = ("name", "description", "seeds", "lr", "weight_decay", "train", "budget", "tasks")
DEFAULT_SUITE = "mad"
LR, WD = "train.lr", "train.weight_decay"


@dataclass(frozen=True)
class SuiteTask:
    name: str
    settings: dict  # the fixed settings
    knob: str  # the setting varied: the difficulty
    levels: tuple


@dataclass(frozen=True)
class Suite:
    source: str
    name: str
    description: str
    seeds: tuple
    lrs: tuple
    weight_decays: tuple
    train: dict  # the train settings as given, budget folded in (no task)
    tasks: tuple  # of SuiteTask


@dataclass
class Probe:
    """The probe's joined plan, and what each of its points is: ``where[point.index]`` is
    ``{"spec", "task", "knob", "level", "lr", "weight_decay"}``."""

    suite: Suite
    specs: list  # the specs' paths, as given
    labels: list  # a name per spec, in order: the first is the reference
    plan: Plan
    where: list


def _numbers(source, key, value):
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                             for v in values) or len(set(values)) != len(values):
        raise SpecError(source, key, f"expected a list of distinct numbers >= 0, got {value!r}",
                        f"e.g. {key}: [1.0e-3, 3.0e-3]")
    return tuple(values)


def _task(source, name, settings):
    where = f"tasks.{name}"
    if not isinstance(settings, dict):
        raise SpecError(source, where, f"expected a mapping of settings, got {settings!r}",
                        "e.g. recall: {n_keys: 8, n_pairs: [2, 4, 8]}")
    varied = [key for key, value in settings.items() if isinstance(value, list)]
    if len(varied) != 1:
        raise SpecError(source, where, f"gives {len(varied)} settings as lists"
                        f"{': ' + ', '.join(varied) if varied else ''}",
                        "exactly one, its difficulty levels: e.g. n_pairs: [2, 4, 8]")
    knob = varied[0]
    levels = settings[knob]
    if len(levels) < 2 or len(set(map(repr, levels))) != len(levels):
        raise SpecError(source, f"{where}.{knob}", f"expected two or more distinct levels, got "
                        f"{levels!r}", "e.g. [2, 4, 8]")
    fixed = {k: v for k, v in settings.items() if k != knob}
    return SuiteTask(name, fixed, knob, tuple(levels))


def load_suite(path=DEFAULT_SUITE):
    """Read and check a suite (a path, or a shipped suite's name: ``"mad"``); SpecError names
    the file and the key. Task settings are checked when the probe is planned."""
    from ..spec.reading import read_yaml

    source = str(resolve(path, SUITES))
    doc = read_yaml(source, "probe suite", "a suite is a mapping with tasks:, lr: and seeds:")
    for key in doc:
        if key not in SUITE_KEYS:
            from .sweepfile import _unknown

            raise _unknown(source, key, SUITE_KEYS)
    for key in ("tasks", "lr", "seeds"):
        if key not in doc:
            raise SpecError(source, key, "missing", "see suites/mad.yaml")
    tasks = doc["tasks"]
    if not isinstance(tasks, dict) or not tasks:
        raise SpecError(source, "tasks", f"expected a mapping of task: settings, got {tasks!r}",
                        "e.g. tasks: {recall: {n_pairs: [2, 4, 8]}}")
    train = doc.get("train", {})
    if not isinstance(train, dict) or "task" in train:
        raise SpecError(source, "train", f"expected a mapping of settings without task:, got "
                        f"{train!r}", "the tasks come from tasks:")
    train = {**train, **({"budget": doc["budget"]} if "budget" in doc else {})}
    name = doc.get("name", Path(source).stem)
    return Suite(source=source, name=str(name), description=str(doc.get("description", "")),
                 seeds=_seeds(source, doc["seeds"]), lrs=_numbers(source, "lr", doc["lr"]),
                 weight_decays=_numbers(source, "weight_decay", doc.get("weight_decay", [0.1])),
                 train=train,
                 tasks=tuple(_task(source, str(n), s) for n, s in tasks.items()))


def spec_labels(specs):
    """A name per spec: its file's stem, or the path as given where two stems are the same."""
    stems = [Path(s).stem for s in specs]
    return [stem if stems.count(stem) == 1 else str(spec) for stem, spec in zip(stems, specs)]


def task_sweep(suite, task, bases, seeds, fixed=None):
    """The sweep of one task: the specs x its levels x the lr x weight decay grid; ``fixed``:
    spec key -> value for every spec (``--set``)."""
    grid = {f"task.{task.knob}": task.levels, LR: suite.lrs, WD: suite.weight_decays}
    doc = {"train": suite.train, "task": {"name": task.name, **task.settings}}
    train, options = _train(suite.source, doc, grid)
    return SweepFile(source=suite.source, name=f"{suite.name}: {task.name}",
                     description=suite.description, bases=tuple(bases), fixed=dict(fixed or {}),
                     grid=grid,
                     baseline={}, seeds=seeds, train=train, train_options=options)


def _planned(sweep, task):
    """The task's plan; an error in a task setting names it as the suite spells it
    (``tasks.recall.n_pairs``), one in ``--set`` as the option."""
    try:
        return make_plan(sweep)
    except SpecError as exc:
        key = str(exc.key or "")
        if key.startswith("task."):
            key = f"tasks.{task.name}.{key[len('task.'):]}".removesuffix(".name")
        elif key.startswith("set."):
            raise SpecError(f"--set {key[len('set.'):]}", None, exc.problem, exc.valid) from None
        raise SpecError(exc.source, key or None, exc.problem, exc.valid) from None


def make_probe(suite, specs, seeds=None, overrides=()):
    """Plan the probe of ``specs`` (paths, or shipped specs' names) on ``suite`` (a Suite or
    what :func:`load_suite` takes): SpecError names the suite or spec and the key on bad input.
    ``seeds``: a count (1 .. N) instead of the suite's. ``overrides``:
    ``KEY=VALUE`` texts applied to every spec, as ``--set`` spells them."""
    from ..spec.reading import parse_override

    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    if not specs:
        raise SpecError("explorer probe", "SPEC", "no spec given", "one spec or more to probe")
    bases = [str(resolve(spec, SPECS).resolve()) for spec in specs]
    if len(set(bases)) != len(bases):  # also "tiny" and specs/tiny.yaml: one file
        twice = next(spec for spec, base in zip(specs, bases) if bases.count(base) > 1)
        raise SpecError("explorer probe", "SPEC", f"{twice}: the same spec file is given twice",
                        "each spec once")
    fixed = dict(parse_override(text) for text in overrides)
    seeds = tuple(range(1, seeds + 1)) if seeds else suite.seeds
    found = versions()
    points, where, runs_by_seed = [], [], {seed: [] for seed in seeds}
    labels = spec_labels(specs)
    first_sweep = None
    for task in suite.tasks:
        sweep = task_sweep(suite, task, bases, seeds, fixed)
        first_sweep = first_sweep or sweep
        plan = _planned(sweep, task)
        moved = {}
        for point in plan.points:
            spec = labels[bases.index(point.coords.get(BASE_KEY, bases[0]))]
            level = point.coords[f"task.{task.knob}"]
            moved[point.index] = replace(point, index=len(points), label=(
                f"{spec}: {task.name} {task.knob}={level}, lr={point.coords[LR]}, "
                f"weight_decay={point.coords[WD]}"))
            points.append(moved[point.index])
            where.append({"spec": spec, "task": task.name, "knob": task.knob, "level": level,
                          "lr": point.coords[LR], "weight_decay": point.coords[WD]})
        for run in plan.runs:
            runs_by_seed[run.seed].append(Run(run.key, moved[run.point.index], run.seed))
    # Seed-major over the whole probe, as a sweep: every setting's first seed before any second
    runs = [run for seed in seeds for run in runs_by_seed[seed]]
    keys = {}
    for run in runs:  # two specs that train the same model would share their runs
        if run.key in keys:
            raise SpecError("explorer probe", "SPEC", f"{keys[run.key]} and {run.point.label} "
                            "train the same model", "probe specs that differ")
        keys[run.key] = run.point.label
    sweep = replace(first_sweep, name=f"probe {suite.name}")
    plan = Plan(sweep, points, {p.index: p.index for p in points}, runs, found)
    return Probe(suite, list(map(str, specs)), labels, plan, where)


def default_store(suite):
    """``probe-mad.sqlite`` in the current folder: a shipped suite's folder is not ours."""
    return Path.cwd() / f"probe-{suite.name}.sqlite"


def run_probe(probe, executor="local", workers=None, threads=None, db=None, progress=None,
              **options):
    """Run what the store does not hold yet (the sweep's driver: resumable) and return the
    profile (:func:`explorer.sweep.probe_report.build_profile`)."""
    from .driver import run_sweep
    from .probe_report import profile

    db = Path(db or default_store(probe.suite))
    run_sweep(probe.plan.sweep, executor=executor, workers=workers, threads=threads, db=db,
              progress=progress, plan=probe.plan, **options)
    return profile(probe, db)
