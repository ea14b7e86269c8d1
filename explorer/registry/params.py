"""Options: :class:`Param`, the one description of everything a user sets, and the one engine
that checks values against it.

Every option is a Param (its type, default, bounds, choices and help): a component's or an
analysis's parameter, a model key and a train setting (fields of ``ModelConfig`` and
``TrainConfig`` that carry one: :func:`option`), a seed. A value is checked once, where the file
that holds it is read, by :meth:`Param.check`, through a :class:`Checker` whose errors name the
file, the dotted key, and what is valid.

Numbers, read by :func:`as_number` (the one parser): whatever YAML reads as a number (``1000``,
``1_000``, ``0.5``, ``1.0e-3``), and a string in exponent notation (``3e-4``, ``1e6``,
``1.5e3``, ``1_0e-3``: YAML 1.2 reads these as numbers, PyYAML's YAML 1.1 leaves them strings).
Any other string stays a string and is refused (``"0.5"`` quoted, ``"inf"``, ``"1__0e-3"``). An
integer option takes a whole float too (``2.0``, ``1.2e6``), a float option any integer; a
float must be finite. Nothing here imports torch.
"""

import dataclasses
import math
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from explorer.errors import ParamError, SpecError, did_you_mean

_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str", list: "list", dict: "dict"}
# What an error says it expected, in the words of the YAML a user writes.
_EXPECTED = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             list: "a list", dict: "a mapping"}
# Exponent notation: digits grouped by single underscores as YAML groups them (1_000), an
# optional fraction, then e or E and a signed or unsigned exponent.
_EXPONENT = re.compile(r"[-+]?(?:\d+(?:_\d+)*(?:\.(?:\d+(?:_\d+)*)?)?|\.\d+(?:_\d+)*)[eE][-+]?\d+")


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()  # the default of an option that has none: it must be given


def as_number(value):
    """``value`` as the number it is written as: a string in exponent notation becomes its
    float; anything else is returned as it is (a YAML number already is one)."""
    if isinstance(value, str) and _EXPONENT.fullmatch(value):
        return float(value)
    return value


def show(value):
    """``repr(value)``, cut to 60 characters: a message quotes what was written, not a novel."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bound(number):
    """A bound as a reader writes it: ``0`` rather than ``0.0``."""
    return int(number) if isinstance(number, float) and number.is_integer() else number


@dataclass(frozen=True)
class Param:
    """One option, as a spec (or a sweep file) writes it.

    The one source of its default: the core passes every declared parameter to the factory (or
    the analysis's ``run``), so their signatures carry no defaults. ``min``/``max`` bound a
    number (inclusive; ``exclusive_min=True`` / ``exclusive_max=True`` make a bound strict); a
    float must be finite. Numbers are read as the module docstring says.
    """

    name: str
    type: type  # int, float, bool, str, list or dict
    default: Any
    help: str = ""
    choices: tuple = ()  # the allowed values, when only a few are
    # True when the value picks only how the same function is computed (an ``impl``): the
    # weights mean the same whatever it is, so a checkpoint loads under any value of it.
    numerics_only: bool = False
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False
    exclusive_max: bool = False

    @property
    def type_name(self):
        return _TYPE_NAMES.get(self.type, getattr(self.type, "__name__", str(self.type)))

    @property
    def expected(self):
        """What a valid value is, in words: ``an integer``, ``a number``, ``true or false``."""
        return _EXPECTED.get(self.type, self.type_name)

    @property
    def range_text(self):
        """The bounds as a reader writes them, e.g. ``>= 1``, ``> 0, <= 1``, or ""."""
        parts = []
        if self.min is not None:
            parts.append(f"{'>' if self.exclusive_min else '>='} {_bound(self.min)}")
        if self.max is not None:
            parts.append(f"{'<' if self.exclusive_max else '<='} {_bound(self.max)}")
        return ", ".join(parts)

    def check(self, value):
        """Return ``value`` converted to this parameter's type, or raise ParamError saying why."""
        if value is None and self.default is None:
            return None
        converted = self._convert(value)
        ok = isinstance(converted, self.type) and not (
            self.type is not bool and isinstance(converted, bool))
        if not ok:
            raise ParamError(self.name, f"expected {self.expected}, got {show(value)}")
        if self.choices and converted not in self.choices:
            raise ParamError(self.name, f"{show(converted)} is not one of "
                                        f"{', '.join(map(repr, self.choices))}")
        if self.type in (int, float):
            self._check_range(converted)
        return converted

    def _convert(self, value):
        if self.type in (int, float):
            value = as_number(value)
        if self.type is int and isinstance(value, float) and value.is_integer():
            return int(value)  # 1.2e6 tokens: YAML reads a float (or, as 1e6, a string)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # an integer beyond any float
                raise ParamError(self.name, f"expected a finite number, got {show(value)}") \
                    from None
        if self.type is list and isinstance(value, (str, int, float)) and \
                not isinstance(value, bool):
            return [value]
        return value

    def _check_range(self, value):
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamError(self.name, f"expected a finite number, got {value!r}")
        low, high = self.min, self.max
        if low is not None and not (value > low if self.exclusive_min else value >= low):
            raise ParamError(self.name, f"must be {'>' if self.exclusive_min else '>='} "
                                        f"{_bound(low)}, got {value!r}")
        if high is not None and not (value < high if self.exclusive_max else value <= high):
            raise ParamError(self.name, f"must be {'<' if self.exclusive_max else '<='} "
                                        f"{_bound(high)}, got {value!r}")


# -- options as dataclass fields ----------------------------------------------------------------

def option(help, default=REQUIRED, *, factory=None, shorthand=None, valid=None, **bounds):
    """A dataclass field described by a :class:`Param` (its name and type are the field's):
    ``help``, the default (none: the key is required; ``factory`` for a mutable one), and
    ``min``/``max``/``exclusive_min``/``exclusive_max``/``choices``. ``shorthand`` names another
    key a file may write instead (``drop_rate`` for ``dropout``), listed beside it in errors;
    ``valid`` is the hint an error about its value ends with."""
    metadata = {"param": {"help": help, **bounds}, "shorthand": shorthand, "valid": valid}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    if default is REQUIRED:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@cache
def options_of(cls):
    """``cls``'s fields that carry a Param, as ``(field, Param)`` pairs, in order."""
    out = []
    for f in dataclasses.fields(cls):
        if "param" not in f.metadata:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = REQUIRED
        out.append((f, Param(f.name, f.type, default, **f.metadata["param"])))
    return tuple(out)


def params_of(cls):
    """The Params of ``cls``'s fields, in order."""
    return tuple(param for _, param in options_of(cls))


def keys_of(cls):
    """The keys a file may write for ``cls``: each field's, its shorthand just before it."""
    keys = []
    for f, _ in options_of(cls):
        keys += [f.metadata["shorthand"], f.name] if f.metadata["shorthand"] else [f.name]
    return tuple(keys)


# -- the engine ---------------------------------------------------------------------------------

class Checker:
    """Checks the plain data read from a file against Params.

    Every error is a one-line :class:`explorer.SpecError` naming the file that wrote the key
    (``origins``, dotted key -> file or ``--set KEY``; else ``source``), the key, and what would be
    valid.
    """

    def __init__(self, source, origins=None):
        self.source, self.origins = source, origins or {}

    def origin(self, key):
        """The file (or ``--set KEY``) that wrote ``key``, or the closest enclosing key: a
        parameter left at its default belongs to whoever chose the component."""
        parts = re.sub(r"\[\d+\]", "", key).split(".")  # layers[1].every was written by layers
        while parts:
            found = self.origins.get(".".join(parts))
            if found is not None:
                return found
            parts.pop()
        return self.source

    def error(self, key, problem, valid=None):
        return SpecError(self.origin(key) if key else self.source, key, problem, valid)

    def mapping(self, node, key, what="a mapping"):
        if not isinstance(node, dict):
            raise self.error(key, f"expected {what}, got {show(node)}")
        return node

    def unknown_keys(self, node, allowed, prefix, noun="key", listed="valid keys"):
        """Refuse a key of ``node`` not in ``allowed``, with the closest as a hint."""
        for key in node:
            if key not in allowed:
                hint = did_you_mean(key, allowed)
                shown = key if isinstance(key, str) and key.isidentifier() else repr(key)
                raise self.error(f"{prefix}{shown}", f"unknown {noun}",
                                 f"{hint}{listed}: {', '.join(allowed) or 'none'}")

    def value(self, param, value, key, valid=None):
        """``param.check(value)``, its ParamError named at ``key`` (and ending with ``valid``,
        when the error brings no hint of its own)."""
        try:
            return param.check(value)
        except ParamError as exc:
            raise self.error(key, exc.problem, exc.valid or valid) from None

    def params(self, key, params, given, owner):
        """``given`` merged over the defaults of ``params``, each name and value checked;
        ``owner`` names what declares them in an error (``norm 'layernorm'``)."""
        declared = {p.name: p for p in params}
        values = {p.name: p.default for p in params}
        self.unknown_keys(given, tuple(declared), f"{key}.", f"parameter of {owner}",
                          "parameters")
        for name, value in given.items():
            values[name] = self.value(declared[name], value, f"{key}.{name}")
        return values

    def fields(self, cls, node, key, noun="key"):
        """The keyword arguments of dataclass ``cls`` (fields made by :func:`option`) for the
        mapping ``node`` at ``key``: unknown keys refused, a required one missing named, each
        value checked by its Param; a field whose type is such a dataclass too is a nested
        mapping checked the same way. Keys not given are left out (the defaults apply)."""
        prefix = f"{key}." if key else ""
        node = self.mapping(node, key, "a mapping" if noun == "key" else f"a mapping of {noun}s")
        self.unknown_keys(node, keys_of(cls), prefix, noun, "valid keys" if noun == "key"
                          else f"valid {noun}s")
        values = {}
        for f, param in options_of(cls):
            where = f"{prefix}{f.name}"
            if f.name not in node:
                if param.default is REQUIRED:
                    raise self.error(where, "missing",
                                     " ".join(filter(None, (param.expected, param.range_text))))
                continue
            if dataclasses.is_dataclass(f.type):
                values[f.name] = f.type(**self.fields(f.type, node[f.name], where, noun))
            else:
                values[f.name] = self.value(param, node[f.name], where, f.metadata["valid"])
        return values
