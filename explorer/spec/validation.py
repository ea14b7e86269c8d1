"""Validating a spec's plain data into the typed :class:`explorer.Spec`, through the registry.

Everything is checked here, once, before any model is built: the model's sizes, each
component's and analysis's parameters against their declared ``Param`` types and ranges, their
cross-field ``check`` rules, and the vocabulary against the tokenizer's. Every error is one
line naming the file (or ``--set``) that wrote the offending key, the key, and what is valid.
"""

from pathlib import Path

from explorer.errors import SpecError, UnknownNameError
from explorer.registry.components import COMPONENT_KINDS
from explorer.registry.params import show
from explorer.spec.config import SEED, ModelConfig, Spec
from explorer.spec.layer_validation import validate_layers
from explorer.spec.validator import Validator, check_choice, component_choice

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


def validate(doc, source, origins, registry):
    """The typed :class:`Spec` for a merged spec document, or a one-line SpecError."""
    v = Validator(source, origins, registry)
    v.unknown_keys(doc, TOP_KEYS, "")
    name = doc.get("name", Path(source).stem if source else "spec")
    if not isinstance(name, str) or not name:
        raise v.error("name", f"expected a non-empty string, got {show(name)}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise v.error("description", f"expected a string, got {show(description)}")
    seed = v.value(SEED, doc.get("seed", SEED.default), "seed")
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
    components = {kind: component_choice(v, kind, comps.get(kind, {"name": DEFAULT_COMPONENTS[kind]}))
                  for kind in COMPONENT_KINDS}
    for kind, choice in components.items():  # once every kind is known: checks may read others
        check_choice(v, config, f"components.{kind}", choice, components)
    layers = validate_layers(v, doc.get("layers", []), config, components)

    plugins = doc.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise v.error("plugins", f"expected a list of module names or paths, got {show(plugins)}")

    analyses = v.mapping(doc.get("analyses", {}), "analyses")
    options = {}
    for aname, given in analyses.items():
        key = f"analyses.{aname}"
        try:
            analysis = registry.analysis(aname)
        except UnknownNameError as exc:
            raise v.error(key, exc.problem, exc.valid) from None
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
    if config.parametrization == "mup" and not config.base_width:
        raise v.error("model.base_width", "missing: parametrization mup scales every width "
                      "from a base width", "the emb_dim the hyperparameters were tuned at, "
                      "e.g. base_width: 64")
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
