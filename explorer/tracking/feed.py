"""Open the chosen trackers and hand each of them every run, a tracker's failure costing only a
warning line: the run is already in the store (or the report) when a tracker sees it.

A run is handed over as a *record*, plain data built by :func:`sweep_record` (a sweep's run and
its outcome) or :func:`report_record` (the ``train`` analysis of ``explorer build``)::

    {"name": "norm=rmsnorm seed=2", "group": "norm=rmsnorm", "config": {flat settings},
     "tags": {"sweep", "point", "seed", "run_key"}, "curve": [...], "metrics": {...},
     "step": last step or None, "status": "done" | "failed", "failure": "KIND: reason" | None}
"""

import contextlib
import json
import math
import sys
from pathlib import Path

from ..errors import ExplorerError, one_line
from ..registry.trackers import TrackingContext


def _warn_to_stderr(line):
    print(f"warning: {line}", file=sys.stderr, flush=True)


def open_trackers(chosen, folder, experiment, source, warn=None, kept_in="the store"):
    """Open each ``(Tracker, options)`` of ``chosen`` (from :func:`explorer.tracking.choose`);
    one that cannot open is an :class:`explorer.ExplorerError` (nothing has run yet). A warning
    says the run is safe in ``kept_in``."""
    context = TrackingContext(folder=Path(folder), experiment=experiment, source=str(source))
    opened = []
    for tracker, options in chosen:
        try:
            opened.append((tracker.name, tracker.load()(context, **options)))
        except Exception as exc:
            for _, session in opened:
                with contextlib.suppress(Exception):  # the error to report is exc
                    _close(session)
            raise ExplorerError(f"tracker {tracker.name} could not start: "
                                f"{type(exc).__name__}: {one_line(exc)}") from None
    return Trackers(opened, warn or _warn_to_stderr, kept_in)


def _close(session):
    close = getattr(session, "close", None)
    if close is not None:
        close()


class Trackers:
    """The opened trackers of one sweep start (or build). ``record(run)`` never raises."""

    def __init__(self, opened, warn=_warn_to_stderr, kept_in="the store"):
        self.opened = list(opened)  # [(name, session)]
        self.warn, self.kept_in = warn, kept_in
        self.warnings = []  # every line warned, for the JSON report

    @property
    def names(self):
        return [name for name, _ in self.opened]

    def _failed(self, name, what, exc):
        line = one_line(f"tracker {name} failed for {what}: {type(exc).__name__}: {exc}; "
                        f"the run is in {self.kept_in}")
        self.warnings.append(line)
        self.warn(line)

    def record(self, run, what="the run"):
        """Hand ``run`` (a record, see the module's docstring, or a function that makes it) to
        every tracker; ``what`` names the run should the record itself fail to build."""
        if callable(run):
            try:
                run = run()
            except Exception as exc:
                self._failed(", ".join(self.names), what, exc)
                return
        for name, session in self.opened:
            try:
                tracked = session.start_run(run["name"], run["group"], run["config"],
                                            run["tags"])
                if run["curve"]:
                    tracked.log_curve(run["curve"])
                if run["metrics"]:
                    tracked.log_metrics(run["metrics"], run["step"])
                tracked.finish(run["status"], run["failure"])
            except Exception as exc:
                self._failed(name, f"run {run['name']}", exc)

    def close(self):
        for name, session in self.opened:
            try:
                _close(session)
            except Exception as exc:
                self._failed(name, "closing", exc)


def flat(doc, prefix=""):
    """A nested mapping as ``{dotted key: scalar}``; lists (per-layer overrides) as JSON."""
    out = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def numbers(metrics):
    """The finite numbers of ``metrics`` (booleans and the rest left out)."""
    return {key: value for key, value in (metrics or {}).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)}


def _config(spec, train, seed, coords=None):
    """The run's flat settings: its grid coordinates, seed, model, components and training."""
    parts = {key: spec[key] for key in ("tokenizer", "model", "components", "layers")
             if spec.get(key) is not None}
    return {**{f"grid.{k}": v for k, v in flat(coords or {}).items()}, "seed": seed,
            **flat(parts), **flat(train, "train.")}


def sweep_record(sweep_name, task, coords, outcome):
    """The record of one sweep run: its task (:meth:`explorer.sweep.plan.Run.task`), grid
    coordinates and outcome (as the store got it)."""
    done = outcome["state"] == "done"
    curve = ((outcome.get("result") or {}).get("curve") or []) if done else []
    metrics = numbers(outcome.get("metrics")) if done else {}
    if outcome.get("seconds") is not None:
        metrics["run_seconds"] = outcome["seconds"]
    label, seed = task["label"], task["seed"]
    return {"name": f"{label} seed={seed}", "group": label,
            "config": _config(task["spec"], task["train"], seed, coords),
            "tags": {"sweep": sweep_name, "point": label, "seed": str(seed),
                     "run_key": task["key"]},
            "curve": curve, "metrics": metrics, "step": curve[-1]["step"] if curve else None,
            "status": "done" if done else "failed",
            "failure": None if done else f"{outcome['failure']}: {outcome['reason']}"}


def report_record(spec, report):
    """The record of ``explorer build --track``'s training run (the ``train`` analysis of
    ``report``), or None when the report did not try to train."""
    result = report["analyses"].get("train")
    failure = report["failures"].get("train")
    if result is None and failure is None:
        return None
    doc = spec.to_dict()
    train = result["config"] if result else {}
    curve = result["curve"] if result else []
    metrics = numbers({key: value for key, value in result.items() if key != "config"}) \
        if result else {}
    return {"name": f"{spec.name} seed={spec.seed}", "group": spec.name,
            "config": _config(doc, train, spec.seed),
            "tags": {"spec": spec.name, "point": spec.name, "seed": str(spec.seed),
                     "source": str(spec.source)},
            "curve": curve, "metrics": metrics, "step": curve[-1]["step"] if curve else None,
            "status": "done" if result else "failed",
            "failure": None if result else f"error: {one_line(failure)}"}
