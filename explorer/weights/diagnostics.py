"""Why a checkpoint does not fit a spec: one record per disagreement, one function that words it.

The checks (the core's tensor comparison, a format's ``check``, an explorer checkpoint's saved
spec) produce :class:`Mismatch` records; :func:`message` turns the first into the one line the
user reads, so every such error is worded the same way: what the file holds, what the spec has,
and the spec key to change.
"""

import json
from dataclasses import dataclass
from typing import Any

from ..errors import ExplorerError

# What a Mismatch can be about; each has its own sentence in message().
PROBLEMS = ("missing", "unexpected", "shape", "value", "saved", "unsupported")


@dataclass(frozen=True)
class Mismatch:
    """One disagreement between a checkpoint and a spec.

    ``problem`` is one of:

    - ``"missing"``: the model needs ``tensor`` (of shape ``want``) and the file lacks it;
    - ``"unexpected"``: the file holds ``tensor`` and the model has no such tensor;
    - ``"shape"``: the file's ``tensor`` has shape ``have``, the spec makes ``want``;
    - ``"value"``: the file's ``source`` (e.g. ``config.json``) sets ``field`` to ``have``;
    - ``"saved"``: an explorer checkpoint was saved with ``key: have``;
    - ``"unsupported"``: a ``source`` checkpoint cannot hold the spec's ``key`` (``note`` says why).

    ``key``, ``current`` and ``value`` are the spec key to change, its value now, and the value
    that fits the file (None when no single value is known; ``advice`` then says what to do).
    """

    problem: str
    tensor: str = ""  # the model's name for the tensor
    origin: str = ""  # its name in the file, where that differs
    have: Any = None  # the file's shape (a tensor) or value (a config field, a saved spec key)
    want: Any = None  # the shape the spec makes
    field: str = ""  # "value": the field of ``source`` ("n_head")
    source: str = "checkpoint"  # where ``have`` was found
    key: str = ""  # the spec key to change
    current: Any = None  # its value in the spec
    value: Any = None  # the value that fits the file; None: no single value is known
    note: str = ""  # a fact the fields above do not carry, shown in parentheses
    advice: str = ""  # what to do when there is no value to set


def _yaml(value):
    """A value as the user would write it in the spec: strings bare, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _shape(shape):
    return str(list(shape))


# After a tensor's sentence when no spec value is known: why the model cannot take it.
_NO_FIT = {"missing": ", which the model needs", "unexpected": " but the model has no such tensor",
           "shape": ""}


def describe(m):
    """The sentence for ``m``, without the file name."""
    if m.problem not in PROBLEMS:
        raise ValueError(f"Mismatch.problem must be one of {', '.join(PROBLEMS)}, "
                         f"got {m.problem!r}")
    if m.problem == "unsupported":
        return f"cannot load a {m.source} checkpoint into this spec: {m.key} {m.note}"
    fixable = bool(m.key) and m.value is not None
    if m.problem == "saved":
        text = f"{m.source} was saved with {m.key}: {_yaml(m.have)}"
        return f"{text} but the spec has {_yaml(m.current)}; set {m.key}: {_yaml(m.value)}"
    name = f"{m.tensor} ({m.origin})" if m.origin and m.origin != m.tensor else m.tensor
    if m.problem == "value":
        text = f"{m.source} has {m.field}: {_yaml(m.have)}"
    elif m.problem == "missing":
        text = f"{m.source} has no {name}" + (f" {_shape(m.want)}" if m.want is not None else "")
    elif m.problem == "unexpected":
        text = f"{m.source} has {name}"
    else:
        text = (f"{m.source} has {name} with shape {_shape(m.have)} "
                f"but the spec makes {_shape(m.want)}")
    if m.note:
        text += f" ({m.note})"
    if fixable and m.problem != "shape":
        text += f" but the spec has {m.key}: {_yaml(m.current)}"
    elif m.problem in _NO_FIT:
        text += _NO_FIT[m.problem]
        if m.key and not fixable:
            text += f" (the spec's {m.key} is {_yaml(m.current)})"
    fix = f"set {m.key}: {_yaml(m.value)}" if fixable else m.advice
    return f"{text}; {fix}" if fix else text


def message(path, m):
    """The one-line error for ``m`` in the checkpoint at ``path``."""
    return f"{path}: {describe(m)}"


def mismatch_error(path, m):
    return ExplorerError(message(path, m))
