"""Run trackers: the descriptor a plugin hands to the core, and what a tracker must do.

A tracker only listens (Ray Tune's loggers): the sweep driver, and ``explorer build --track``
after a ``train`` analysis, hand it each finished or failed run *after* the run is safe in its
store or report. A tracker that raises is reported in one line and skipped; it never loses a
run. Nothing here imports a tracking library: a built-in names the modules it needs in
``requires``, and they are looked for (not imported) before a sweep starts.
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from explorer.registry.components import resolve
from explorer.registry.params import Param  # noqa: F401 - a tracker's options are Params


@dataclass(frozen=True)
class TrackingContext:
    """Where a tracker is opened: what ``open(ctx, **options)`` gets."""

    folder: Path  # where local files go by default: the sweep store's folder, or the cwd
    experiment: str  # the sweep's name, or the spec's for ``explorer build --track``
    source: str  # the file whose ``track:`` (or the command line) chose the tracker


class TrackedRun(Protocol):
    """One run as a tracker holds it (what :meth:`TrackerSession.start_run` returns)."""

    def log_curve(self, curve: list[dict]) -> None:
        """The run's curve: ``[{"step", "tokens", "train_loss", "val_loss"}, ...]`` in step
        order (an ``aux_loss`` too where the model has one)."""

    def log_metrics(self, metrics: dict[str, float], step: int | None) -> None:
        """The final figures (validation losses, costs, throughput), flat name -> number;
        ``step`` is the run's last step (None when it failed before any)."""

    def finish(self, status: str, failure: str | None) -> None:
        """``status`` ``"done"`` or ``"failed"``; ``failure`` ``"KIND: reason"`` (one line) when
        it failed (kinds: error, diverged, memory, killed), else None."""


class TrackerSession(Protocol):
    """An opened tracker: one per sweep start (or build). ``close()`` is optional."""

    def start_run(self, name: str, group: str, config: dict[str, Any],
                  tags: dict[str, str]) -> TrackedRun:
        """Begin recording a run. ``name`` is unique in the sweep (``"norm=rmsnorm seed=2"``);
        ``group`` is its grid point (``"norm=rmsnorm"``), shared by the point's seeds;
        ``config`` the flat settings (``model.*``, ``components.*``, ``train.*``, ``seed``, the
        grid coordinates under ``grid.*``); ``tags`` plain strings: ``sweep``, ``point``,
        ``seed``, ``run_key``."""


@dataclass(frozen=True)
class Tracker:
    """A run tracker a plugin contributes (see ``hookspecs.explorer_trackers``)."""

    name: str  # what ``--track`` and a sweep file's ``track:`` name
    # open(ctx, **options) -> TrackerSession: ctx a TrackingContext, options every Param below
    # with the user's values merged over the defaults. A callable or "module:attribute".
    open: Callable | str
    description: str = ""
    params: tuple[Param, ...] = ()
    # Modules it imports when opened, looked for before a sweep starts, and how to install them:
    # a missing one is a one-line error naming ``install``.
    requires: tuple[str, ...] = ()
    install: str = ""

    def load(self):
        return resolve(self.open)

    def missing(self):
        """The first module of ``requires`` that is not installed, or None."""
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module)
            except (ImportError, ValueError):
                found = None
            if found is None:
                return module
        return None

    def problem(self):
        """Why this descriptor is unusable, or None."""
        if not self.name or not isinstance(self.name, str):
            return f"tracker {self.name!r} needs a non-empty name"
        if not (callable(self.open) or isinstance(self.open, str)):
            return f"tracker {self.name!r}: open must be a callable or 'module:attribute'"
        return None
