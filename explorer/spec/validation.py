"""Validating a spec's plain data into the typed :class:`explorer.Spec`, through the registry.

Everything is checked here, once, before any model is built: the model's sizes, each
component's and analysis's parameters against their declared ``Param`` types and ranges, their
cross-field ``check`` rules, and the vocabulary against the tokenizer's. Every error is one
line naming the file (or ``--set``) that wrote the offending key, the key, and what is valid.
"""

import inspect
import math
import re
from pathlib import Path

from explorer.registry.components import COMPONENT_KINDS
from explorer.spec.config import DROPOUT_PLACES, ComponentChoice, Dropout, ModelConfig, Spec
from explorer.errors import ParamError, PluginError, SpecError, UnknownNameError, did_you_mean

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
# Far beyond any real model (GPT-3 175B: 96 layers, 12,288 wide), but small enough that even
# assembling the model on the meta device finishes in seconds rather than hanging.
MAX_SIZES = {"vocab_size": 2**24, "context_length": 2**21, "emb_dim": 2**17, "n_heads": 2**12,
             "n_layers": 1024}
SIZE_KEYS = tuple(MAX_SIZES)
# What a spec's model: section may hold (drop_rate is shorthand for dropout).
MODEL_KEYS = (*SIZE_KEYS, "qkv_bias", "drop_rate", "dropout", "scale_embeddings", "logit_softcap")
TOP_KEYS = ("extends", "name", "description", "seed", "tokenizer", "model", "components",
            "layers", "plugins", "analyses")


class _Validator:
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
            raise self.error(key, f"expected a mapping, got {_show(node)}")
        return node

    def integer(self, node, key, minimum=1, maximum=None):
        value = node.get(key.rsplit(".", 1)[-1])
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_show(value)}",
                             f"a whole number >= {minimum}")
        if value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be <= {maximum:,}, got {value:,}")
        return value

    def boolean(self, node, key):
        value = node.get(key.rsplit(".", 1)[-1], False)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_show(value)}")
        return value

    def rate(self, value, key):
        value = _as_float(value)
        if not isinstance(value, float) or not (0.0 <= value < 1.0) or math.isnan(value):
            raise self.error(key, f"dropout rate must be in [0, 1), got {_show(value)}")
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
                value = _as_float(value)
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


def _as_float(value):
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


def _show(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    seed = doc.get("seed", 123)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise v.error("seed", f"expected a non-negative integer, got {_show(seed)}")
    tokenizer = doc.get("tokenizer", "gpt2")
    try:
        if not isinstance(tokenizer, str):
            raise UnknownNameError("tokenizer", tokenizer, registry.names("tokenizer"))
        registry.component("tokenizer", tokenizer)
    except UnknownNameError as exc:
        raise v.error("tokenizer", exc.problem, exc.valid) from None

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
        except UnknownNameError as exc:
            raise v.error(key, exc.problem, exc.valid) from None
        options[aname] = v.params(key, analysis, v.mapping(given or {}, key))
        v.cross_check(key, analysis, registry.provider[("analysis", aname)], config,
                      options[aname])

    return Spec(name=name, seed=seed, tokenizer=tokenizer, model=config, components=components,
                layers=layers, plugins=tuple(plugins), analyses=options, description=description,
                source=source)


def _model_config(v, doc, source):
    if "model" not in doc:
        raise SpecError(source, "model", "missing",
                        "a spec needs model: {vocab_size, context_length, emb_dim, n_heads, n_layers}")
    model = v.mapping(doc["model"], "model")
    v.unknown_keys(model, MODEL_KEYS, "model.")
    sizes = {}
    for key in SIZE_KEYS:
        if key not in model:
            raise v.error(f"model.{key}", "missing", "a whole number >= 1")
        sizes[key] = v.integer(model, f"model.{key}", maximum=MAX_SIZES[key])
    if sizes["emb_dim"] % sizes["n_heads"]:
        raise v.error("model.emb_dim", f"emb_dim {sizes['emb_dim']} is not divisible by "
                      f"n_heads {sizes['n_heads']}",
                      "choose emb_dim a multiple of n_heads (head size = emb_dim / n_heads)")
    qkv_bias = v.boolean(model, "model.qkv_bias")
    scale_embeddings = v.boolean(model, "model.scale_embeddings")
    logit_softcap = _as_float(model.get("logit_softcap", 0.0))
    if not isinstance(logit_softcap, float) or not 0.0 <= logit_softcap < math.inf:
        raise v.error("model.logit_softcap", f"expected a number >= 0, got {_show(logit_softcap)}",
                      "0 for no final-logit soft-capping, e.g. 30.0 (Gemma 2)")
    rates = v.mapping(model.get("dropout", {}), "model.dropout")
    v.unknown_keys(rates, DROPOUT_PLACES, "model.dropout.")
    dropout = Dropout(**{p: v.rate(rates.get(p, 0.0), f"model.dropout.{p}") for p in DROPOUT_PLACES})
    return ModelConfig(qkv_bias=qkv_bias, dropout=dropout, scale_embeddings=scale_embeddings,
                       logit_softcap=logit_softcap, **sizes)


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
    except UnknownNameError as exc:
        raise v.error(key, exc.problem, exc.valid) from None
    values = v.params(key, component, {k: val for k, val in choice.items() if k != "name"})
    return ComponentChoice(kind, name, values)


def _check_choice(v, config, key, choice, choices):
    """Run the component's ``check`` on ``choice``, with ``choices`` (kind -> ComponentChoice)
    of the same layer for a check that reads other kinds."""
    registry = v.registry
    v.cross_check(key, registry.component(choice.kind, choice.name),
                  registry.provider[(choice.kind, choice.name)], config, choice.params, choices)

