"""Run trackers on the core's side: read a ``track:`` choice, open the chosen trackers, and hand
them each run once its outcome is safe in the store (or the report).

The trackers themselves are plugins (``hookspecs.explorer_trackers``; the built-ins, mlflow and
tensorboard, are ``explorer.plugins.trackers``); their contract is
:mod:`explorer.registry.trackers`. This package imports only the registry and explorer.errors,
and nothing heavy: a tracker imports its library when it is opened.
"""

from .choice import choose, parse_track
from .feed import Trackers, open_trackers, report_record, sweep_record

__all__ = ["choose", "parse_track", "Trackers", "open_trackers", "report_record",
           "sweep_record"]
