"""Validating a spec's plain data into the typed :class:`explorer.Spec`, through the registry.

Everything is checked here, once, before any model is built: the model's sizes, each
component's and analysis's parameters against their declared ``Param`` types and ranges, their
cross-field ``check`` rules, and the vocabulary against the tokenizer's. Every error is one
line naming the file (or ``--set``) that wrote the offending key, the key, and what is valid.
"""

import inspect
from pathlib import Path

from explorer.registry.components import COMPONENT_KINDS
from explorer.registry.params import REQUIRED, Checker, Param
from explorer.registry.params import show as _show
from explorer.spec.config import SEED, ComponentChoice, ModelConfig, Spec
from explorer.errors import ParamError, PluginError, SpecError
from explorer.registry.plugin_manager import unknown_name_message

# The book's GPT-2 choices, used for any kind a spec leaves out.
DEFAULT_COMPONENTS = {
    "norm": "layernorm",
    "activation": "gelu_tanh",
    "ffn": "mlp",
    "attention": "mha",
    "positional": "learned",
    "residual": "pre_norm",
    "weight_tying": "none",
}
TOP_KEYS = ("extends", "name", "description", "seed", "tokenizer", "model", "components",
            "layers", "plugins", "analyses")


class _Validator(Checker):
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


def validate(doc, source, origins, registry):
    """The typed :class:`Spec` for a merged spec document, or a one-line SpecError."""
    v = _Validator(source, origins, registry)
    v.unknown_keys(doc, TOP_KEYS, "")
    name = doc.get("name", Path(source).stem if source else "spec")
    if not isinstance(name, str) or not name:
        raise v.error("name", f"expected a non-empty string, got {_show(name)}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise v.error("description", f"expected a string, got {_show(description)}")
    seed = v.value(SEED, doc.get("seed", SEED.default), "seed")
    tokenizer = doc.get("tokenizer", "gpt2")
    try:
        if not isinstance(tokenizer, str):
            raise KeyError(tokenizer)
        registry.component("tokenizer", tokenizer)
    except KeyError:
        raise v.error("tokenizer", unknown_name_message(
            "tokenizer", tokenizer, registry.names("tokenizer"))) from None

    config = _model_config(v, doc, source)
    _check_vocabulary(v, config, tokenizer)

    comps = v.mapping(doc.get("components", {}), "components")
    v.unknown_keys(comps, COMPONENT_KINDS, "components.")
    components = {kind: _component(v, kind, comps.get(kind, {"name": DEFAULT_COMPONENTS[kind]}))
                  for kind in COMPONENT_KINDS}
    for kind, choice in components.items():  # once every kind is known: checks may read others
        _check_choice(v, config, f"components.{kind}", choice, components)
    from explorer.spec.layer_validation import validate_layers  # it builds on this module's helpers

    layers = validate_layers(v, doc.get("layers", []), config, components)

    plugins = doc.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise v.error("plugins", f"expected a list of module names or paths, got {_show(plugins)}")

    analyses = v.mapping(doc.get("analyses", {}), "analyses")
    options = {}
    for aname, given in analyses.items():
        key = f"analyses.{aname}"
        try:
            analysis = registry.analysis(aname)
        except KeyError as exc:
            raise v.error(key, exc.args[0]) from None
        options[aname] = v.component_params(key, analysis, v.mapping(given or {}, key))
        v.cross_check(key, analysis, registry.provider[("analysis", aname)], config,
                      options[aname])

    return Spec(name=name, seed=seed, tokenizer=tokenizer, model=config, components=components,
                layers=layers, plugins=tuple(plugins), analyses=options, description=description,
                source=source)


def _model_config(v, doc, source):
    if "model" not in doc:
        raise SpecError(source, "model", "missing",
                        "a spec needs model: {vocab_size, context_length, emb_dim, n_heads, n_layers}")
    config = ModelConfig(**v.fields(ModelConfig, doc["model"], "model"))
    if config.emb_dim % config.n_heads:
        raise v.error("model.emb_dim", f"emb_dim {config.emb_dim} is not divisible by "
                      f"n_heads {config.n_heads}",
                      "choose emb_dim a multiple of n_heads (head size = emb_dim / n_heads)")
    return config


def _check_vocabulary(v, config, tokenizer):
    """Refuse a vocabulary smaller than the tokenizer's declared one: its ids would index past
    the embedding. A tokenizer that declares no ``n_vocab`` is checked when it is used."""
    n_vocab = v.registry.component("tokenizer", tokenizer).n_vocab
    if n_vocab is None or config.vocab_size >= n_vocab:
        return
    smaller = [(name, comp.n_vocab) for name in v.registry.names("tokenizer")
               if (comp := v.registry.component("tokenizer", name)).n_vocab
               and comp.n_vocab < n_vocab]
    others = "".join(f" or tokenizer: {name} ({n:,})" for name, n in smaller)
    raise v.error("model.vocab_size", f"{config.vocab_size} is smaller than the {tokenizer} "
                  f"tokenizer's {n_vocab:,} tokens", f"use vocab_size >= {n_vocab}{others}")


def _component(v, kind, choice, key=None):
    """The :class:`ComponentChoice` a spec's ``{name: ..., param: value}`` makes, each parameter
    checked against its Param (the cross-field ``check`` runs later: :func:`_check_choice`)."""
    key = key or f"components.{kind}"
    registry = v.registry
    if not isinstance(choice, dict):
        raise v.error(key, f"expected a name or {{name: ..., param: value}}, got {_show(choice)}")
    if "name" not in choice:
        raise v.error(f"{key}.name", "missing", f"registered {kind} components: "
                      f"{', '.join(registry.names(kind))}")
    name = choice["name"]
    if not isinstance(name, str):
        raise v.error(f"{key}.name", f"expected a component name, got {_show(name)}",
                      f"registered {kind} components: {', '.join(registry.names(kind))}")
    try:
        component = registry.component(kind, name)
    except KeyError as exc:
        raise v.error(key, exc.args[0]) from None
    values = v.component_params(key, component,
                                {k: val for k, val in choice.items() if k != "name"})
    return ComponentChoice(kind, name, values)


def _check_choice(v, config, key, choice, choices):
    """Run the component's ``check`` on ``choice``, with ``choices`` (kind -> ComponentChoice)
    of the same layer for a check that reads other kinds."""
    registry = v.registry
    v.cross_check(key, registry.component(choice.kind, choice.name),
                  registry.provider[(choice.kind, choice.name)], config, choice.params, choices)

