"""The checker spec validation is made of: the one engine (:class:`explorer.registry.params.Checker`)
with the registry the spec's component and analysis names are looked up in, and the checks of one
component choice.

Shared by :mod:`explorer.spec.validation` (the whole spec) and
:mod:`explorer.spec.layer_validation` (its ``layers:`` entries), which both build on it: this
module imports neither.
"""

import inspect

from explorer.errors import ParamError, PluginError, UnknownNameError
from explorer.registry.params import REQUIRED, Checker, Param, show
from explorer.spec.config import ComponentChoice


class Validator(Checker):
    """The engine (:class:`explorer.registry.params.Checker`) with the registry the spec's
    component and analysis names are looked up in."""

    def __init__(self, source, origins, registry):
        super().__init__(source, origins)
        self.registry = registry

    def integer(self, node, key, minimum=1, maximum=None):
        """``node``'s whole-number value at ``key`` (a dotted key, the last part in ``node``)."""
        name = key.rsplit(".", 1)[-1]
        return self.value(Param(name, int, REQUIRED, min=minimum, max=maximum), node.get(name),
                          key)

    def component_params(self, key, owner, given):
        """Merge ``given`` over ``owner``'s declared defaults, each name, type and range checked."""
        return self.params(key, owner.params, given, _what(owner))

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
    values = v.component_params(key, component,
                                {k: val for k, val in choice.items() if k != "name"})
    return ComponentChoice(kind, name, values)


def check_choice(v, config, key, choice, choices):
    """Run the component's ``check`` on ``choice``, with ``choices`` (kind -> ComponentChoice)
    of the same layer for a check that reads other kinds."""
    registry = v.registry
    v.cross_check(key, registry.component(choice.kind, choice.name),
                  registry.provider[(choice.kind, choice.name)], config, choice.params, choices)
