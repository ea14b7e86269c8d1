"""What plugins hand to the core: descriptors of components and analyses, and their parameters.

These are plain data and import nothing heavy: listing plugins and validating a spec never
imports torch. A factory may be given as ``"module:attribute"`` and is imported on first use.
"""

import importlib
import math
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ParamError

# The component kinds a spec's ``components:`` section names, in the order the report lists them.
COMPONENT_KINDS = (
    "norm", "activation", "ffn", "attention", "positional", "residual", "weight_tying",
)
# Registered like components, chosen by the spec's top-level ``tokenizer:`` key.
TOKENIZER_KIND = "tokenizer"
REGISTERED_KINDS = (*COMPONENT_KINDS, TOKENIZER_KIND)

_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str", list: "list", dict: "dict"}


@dataclass(frozen=True)
class Param:
    """One parameter of a component or an analysis, as a spec writes it.

    The one source of its default: the core passes every declared parameter to the factory (or
    the analysis's ``run``), so their signatures carry no defaults. ``min``/``max`` bound a
    number (inclusive; ``exclusive_min=True`` makes the lower bound strict: ``> min``); a float
    must be finite.
    """

    name: str
    type: type  # int, float, bool, str, list or dict
    default: Any
    help: str = ""
    choices: tuple = ()  # the allowed values, when only a few are
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False

    @property
    def type_name(self):
        return _TYPE_NAMES.get(self.type, getattr(self.type, "__name__", str(self.type)))

    @property
    def range_text(self):
        """The bounds as a reader writes them, e.g. ``>= 1``, ``> 0, <= 1``, or ""."""
        parts = []
        if self.min is not None:
            parts.append(f"{'>' if self.exclusive_min else '>='} {self.min}")
        if self.max is not None:
            parts.append(f"<= {self.max}")
        return ", ".join(parts)

    def check(self, value):
        """Return ``value`` converted to this parameter's type, or raise ParamError saying why."""
        if value is None and self.default is None:
            return None
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is list and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        ok = isinstance(value, self.type) and not (self.type is not bool and isinstance(value, bool))
        if not ok:
            raise ParamError(self.name, f"expected {self.type_name}, got {value!r}")
        if self.choices and value not in self.choices:
            raise ParamError(self.name,
                             f"{value!r} is not one of {', '.join(map(repr, self.choices))}")
        if self.type in (int, float):
            self._check_range(value)
        return value

    def _check_range(self, value):
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamError(self.name, f"expected a finite number, got {value!r}")
        low_ok = self.min is None or (value > self.min if self.exclusive_min else value >= self.min)
        if not low_ok:
            raise ParamError(self.name, f"must be {'>' if self.exclusive_min else '>='} "
                                        f"{self.min}, got {value!r}")
        if self.max is not None and not value <= self.max:
            raise ParamError(self.name, f"must be <= {self.max}, got {value!r}")


def _resolve(target):
    """A callable, or a ``"module:attribute"`` string imported now."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Component:
    """A model component a plugin contributes (see ``hookspecs.explorer_components``)."""

    kind: str
    name: str
    factory: Callable | str
    params: tuple[Param, ...] = ()
    description: str = ""
    # Cross-field rules, run when a spec is validated: ``check(config, params)`` (the validated
    # ModelConfig, the merged parameter values) raises ParamError. A callable or "module:attr";
    # it must not import torch (spec validation never does).
    check: Callable | str | None = None
    # Tokenizers only: how many token ids it produces, declared so that a spec whose vocab_size
    # is smaller is refused without loading the tokenizer. None: not declared.
    n_vocab: int | None = None

    def load(self):
        return _resolve(self.factory)

    def load_check(self):
        return _resolve(self.check) if self.check else None

    def param(self, name):
        return next((p for p in self.params if p.name == name), None)

    def defaults(self):
        return {p.name: p.default for p in self.params}


@dataclass(frozen=True)
class Analysis:
    """An analysis a plugin contributes (see ``hookspecs.explorer_analyses``)."""

    name: str
    run: Callable | str
    description: str = ""
    params: tuple[Param, ...] = ()
    default: bool = True  # part of the set ``explorer build`` runs without --only
    render: Callable | str | None = None
    # False for analyses that read only shapes (ctx.shape_model()): they run on the meta device,
    # so they still run when the weights would not fit in memory.
    needs_weights: bool = True
    # Cross-field rules on the options, as Component.check: ``check(config, options)``.
    check: Callable | str | None = None

    def load(self):
        return _resolve(self.run)

    def load_check(self):
        return _resolve(self.check) if self.check else None

    def load_render(self):
        return _resolve(self.render) if self.render else None

    def param(self, name):
        return next((p for p in self.params if p.name == name), None)

    def defaults(self):
        return {p.name: p.default for p in self.params}


@dataclass
class Provider:
    """Where a registered component or analysis came from, for reports and error messages."""

    plugin: str  # the name it was registered under
    distribution: str = ""  # "name version" of the installed distribution, if any

    def __str__(self):
        return f"{self.plugin} ({self.distribution})" if self.distribution else self.plugin
