"""Which trackers a sweep (or a build) records to, and with which options.

A sweep file's ``track:`` (and ``--track NAME``) reads as a tracker's name, a list of names, or
a mapping of names to options::

    track: mlflow
    track: [mlflow, tensorboard]
    track: {mlflow: {uri: sqlite:///mlflow.db}, tensorboard: null}

:func:`parse_track` checks that shape when the file is read; :func:`choose` checks the names
and options against the registered trackers, and, before anything runs, that each tracker's
library is installed. Every error is one line naming the file (or ``--track``) and the key.
"""

from ..errors import ExplorerError, SpecError, UnknownNameError
from ..registry.params import Checker

KEY = "track"
SHAPE = "a tracker's name, a list of names, or a mapping of names to options, e.g. track: mlflow"


def parse_track(value, source, key=KEY):
    """``value`` as a tuple of ``(name, options)``; None or empty: no tracker. A tuple is taken
    to be parsed already (YAML never reads one)."""
    if value is None:
        return ()
    if isinstance(value, tuple):
        return value
    if isinstance(value, str):
        value = [value]
    if isinstance(value, dict):
        value = [{name: options} for name, options in value.items()]
    if not isinstance(value, list):
        raise SpecError(source, key, f"expected {SHAPE}, got {value!r}")
    chosen = []
    for item in value:
        name, options = (item, {}) if isinstance(item, str) else \
            next(iter(item.items())) if isinstance(item, dict) and len(item) == 1 else (None, None)
        if not isinstance(name, str) or not name:
            raise SpecError(source, key, f"expected {SHAPE}, got {item!r}")
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise SpecError(source, f"{key}.{name}", f"expected a mapping of options, got "
                            f"{options!r}", f"e.g. {key}: {{{name}: {{OPTION: VALUE}}}}, or "
                            f"{key}: {name} for the defaults")
        if name in (n for n, _ in chosen):
            raise SpecError(source, key, f"names tracker {name!r} twice", "each tracker once")
        chosen.append((name, dict(options)))
    return tuple(chosen)


def with_names(chosen, names):
    """``--track NAME`` (repeatable) replaces the file's choice; a tracker the file also names
    keeps the file's options."""
    if not names:
        return chosen
    given = dict(chosen)
    return tuple((name, given.get(name, {})) for name in dict.fromkeys(names))


def choose(chosen, registry, source, installed=True, key=KEY):
    """``[(Tracker, options), ...]`` for ``chosen`` (from :func:`parse_track`): each name
    registered, its options checked (defaults merged in), and with ``installed`` its library
    present (else one line naming the extra that installs it). Errors name ``source`` and
    ``key`` (``"", "--track"`` for the command line's choice)."""
    checker = Checker(source)
    out = []
    for name, options in chosen:
        try:
            tracker = registry.tracker(name)
        except UnknownNameError as exc:
            raise SpecError(source, key, exc.problem, exc.valid + "; explorer plugins --kind "
                            "tracker lists them") from None
        values = checker.params(f"{key}.{name}", tracker.params, options, f"tracker {name!r}")
        missing = tracker.missing() if installed else None
        if missing:
            install = tracker.install or f"pip install {missing}"
            where = f"{source}: " if source else ""
            raise ExplorerError(f"{where}{key}: tracker {name!r} needs the Python package "
                                f"{missing}, which is not installed; {install}")
        out.append((tracker, values))
    return out
