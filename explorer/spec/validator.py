"""The checker spec validation is made of: a :class:`Validator` that names the file (or
``--set``) and the key of every error, and the checks of one component choice.

Shared by :mod:`explorer.spec.validation` (the whole spec) and
:mod:`explorer.spec.layer_validation` (its ``layers:`` entries), which both build on it: this
module imports neither.
"""

import inspect
import math
import re

from explorer.errors import ParamError, PluginError, SpecError, UnknownNameError, did_you_mean
from explorer.spec.config import ComponentChoice


class Validator:
    """Checks one spec document's values; every error it raises names the file (or ``--set``)
    that wrote the key, the key, and what would be valid."""

    def __init__(self, source, origins, registry):
        self.source, self.origins, self.registry = source, origins, registry

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
        return SpecError(self.origin(key), key, problem, valid)

    def unknown_keys(self, node, allowed, prefix):
        for key in node:
            if key not in allowed:
                hint = did_you_mean(key, allowed)
                shown = key if isinstance(key, str) and key.isidentifier() else repr(key)
                raise self.error(f"{prefix}{shown}", "unknown key",
                                 f"{hint}valid keys: {', '.join(allowed)}")

    def mapping(self, node, key):
        if not isinstance(node, dict):
            raise self.error(key, f"expected a mapping, got {show(node)}")
        return node

    def integer(self, node, key, minimum=1, maximum=None):
        value = node.get(key.rsplit(".", 1)[-1])
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {show(value)}",
                             f"a whole number >= {minimum}")
        if value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be <= {maximum:,}, got {value:,}")
        return value

    def boolean(self, node, key):
        value = node.get(key.rsplit(".", 1)[-1], False)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {show(value)}")
        return value

    def rate(self, value, key):
        value = as_float(value)
        if not isinstance(value, float) or not (0.0 <= value < 1.0) or math.isnan(value):
            raise self.error(key, f"dropout rate must be in [0, 1), got {show(value)}")
        return value

    def params(self, key, owner, given):
        """Merge ``given`` over ``owner``'s declared defaults, checking each name, type and range."""
        values = owner.defaults()
        declared = [p.name for p in owner.params]
        for pname, value in given.items():
            param = owner.param(pname)
            if param is None:
                hint = did_you_mean(pname, declared)
                raise self.error(f"{key}.{pname}", f"unknown parameter of {_what(owner)}",
                                 f"{hint}parameters: {', '.join(declared) or 'none'}")
            if param.type is float:
                value = as_float(value)
            try:
                values[pname] = param.check(value)
            except ParamError as exc:
                raise self.error(f"{key}.{pname}", exc.problem, exc.valid) from None
        return values

    def cross_check(self, key, owner, provider, config, values, choices=None):
        """Run ``owner``'s ``check(config, params)``; its ParamError names a key under ``key``.

        A component's check that takes a third argument also gets ``choices``, the
        :class:`ComponentChoice` of every kind for the same layer (rules across kinds: RoPE
        needs the attention's head size even)."""
        try:
            check = owner.load_check()
            if check is not None and choices is not None and _takes_three(check):
                check(config, dict(values), dict(choices))
            elif check is not None:
                check(config, dict(values))
        except ParamError as exc:
            raise self.error(f"{key}.{exc.param}" if exc.param else key, exc.problem,
                             exc.valid) from None
        except Exception as exc:
            raise PluginError(f"plugin {provider.plugin}: the check of {_what(owner)} raised "
                              f"{type(exc).__name__}: {exc}") from None


def _takes_three(check):
    """Whether ``check`` accepts a third positional argument (the opt-in ``choices``)."""
    try:
        params = inspect.signature(check).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind is p.VAR_POSITIONAL for p in params)


def _what(owner):
    return f"{getattr(owner, 'kind', 'analysis')} {owner.name!r}"


def as_float(value):
    """Numbers as floats; also YAML 1.1's ``1e-5``, which PyYAML reads as a string."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def show(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def component_choice(v, kind, choice, key=None):
    """The :class:`ComponentChoice` a spec's ``{name: ..., param: value}`` makes, each parameter
    checked against its Param (the cross-field ``check`` runs later: :func:`check_choice`)."""
    key = key or f"components.{kind}"
    registry = v.registry
    if not isinstance(choice, dict):
        raise v.error(key, f"expected a name or {{name: ..., param: value}}, got {show(choice)}")
    if "name" not in choice:
        raise v.error(f"{key}.name", "missing", f"registered {kind} components: "
                      f"{', '.join(registry.names(kind))}")
    name = choice["name"]
    if not isinstance(name, str):
        raise v.error(f"{key}.name", f"expected a component name, got {show(name)}",
                      f"registered {kind} components: {', '.join(registry.names(kind))}")
    try:
        component = registry.component(kind, name)
    except UnknownNameError as exc:
        raise v.error(key, exc.problem, exc.valid) from None
    values = v.params(key, component, {k: val for k, val in choice.items() if k != "name"})
    return ComponentChoice(kind, name, values)


def check_choice(v, config, key, choice, choices):
    """Run the component's ``check`` on ``choice``, with ``choices`` (kind -> ComponentChoice)
    of the same layer for a check that reads other kinds."""
    registry = v.registry
    v.cross_check(key, registry.component(choice.kind, choice.name),
                  registry.provider[(choice.kind, choice.name)], config, choice.params, choices)

