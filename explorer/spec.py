"""YAML specs: reading, ``extends``, ``--set`` overrides, and validation into one typed object.

A spec is validated once, here, at the edge: everything after ``load_spec`` can trust it. Every
error names the file that set the offending key, the key, and what would be valid.
"""

import copy
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .components import COMPONENT_KINDS
from .errors import SpecError
from .plugin_manager import unknown_name_message

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
DROPOUT_PLACES = ("embedding", "attention", "residual")
# Far beyond any real model (GPT-3 175B: 96 layers, 12,288 wide), but small enough that even
# assembling the model on the meta device finishes in seconds rather than hanging.
MAX_SIZES = {"vocab_size": 2**24, "context_length": 2**21, "emb_dim": 2**17, "n_heads": 2**12,
             "n_layers": 1024}
MODEL_KEYS = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "qkv_bias",
              "dropout", "scale_embeddings", "logit_softcap")
TOP_KEYS = ("extends", "name", "description", "seed", "tokenizer", "model", "components",
            "plugins", "analyses")


@dataclass(frozen=True)
class Dropout:
    embedding: float = 0.0  # after the token + position embeddings
    attention: float = 0.0  # on the attention weights
    residual: float = 0.0  # on each sublayer's output, before it joins the shortcut


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int  # rows of the token embedding and the output head
    context_length: int  # the longest sequence the model accepts
    emb_dim: int  # the width of the residual stream
    n_heads: int  # attention heads per block
    n_layers: int  # transformer blocks
    qkv_bias: bool = False  # biases on the query, key and value projections
    dropout: Dropout = field(default_factory=Dropout)
    # Gemma: multiply the token embeddings by sqrt(emb_dim), cast to their dtype, before anything
    # else sees them (the embedding is initialised, and tied, at the scale of the head).
    scale_embeddings: bool = False
    # Gemma 2: the logits become c * tanh(logits / c), so none exceeds c in size; 0 = off.
    logit_softcap: float = 0.0

    @property
    def head_dim(self):
        return self.emb_dim // self.n_heads


@dataclass(frozen=True)
class ComponentChoice:
    kind: str
    name: str
    params: dict  # the declared defaults with the spec's values merged over them


@dataclass
class Spec:
    name: str
    seed: int
    tokenizer: str
    model: ModelConfig
    components: dict  # kind -> ComponentChoice, in COMPONENT_KINDS order
    plugins: tuple = ()  # module names or paths (resolved against the spec's folder)
    analyses: dict = field(default_factory=dict)  # analysis name -> options
    description: str = ""
    source: str = ""  # the file it was read from
    # The plugins the spec was validated against; build_model resolves components through it.
    plugin_manager: object = field(default=None, repr=False, compare=False)

    def to_dict(self):
        """The resolved spec as plain data (what the report prints and checkpoints carry)."""
        m = self.model
        return {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "tokenizer": self.tokenizer,
            "model": {
                "vocab_size": m.vocab_size, "context_length": m.context_length,
                "emb_dim": m.emb_dim, "n_heads": m.n_heads, "n_layers": m.n_layers,
                "qkv_bias": m.qkv_bias,
                "dropout": {p: getattr(m.dropout, p) for p in DROPOUT_PLACES},
                "scale_embeddings": m.scale_embeddings, "logit_softcap": m.logit_softcap,
            },
            "components": {k: {"name": c.name, **c.params} for k, c in self.components.items()},
            "plugins": list(self.plugins),
            "analyses": copy.deepcopy(self.analyses),
        }


# -- reading ---------------------------------------------------------------------------------

def _read_yaml(path):
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise SpecError(path, None, "no such file") from None
    except IsADirectoryError:
        raise SpecError(path, None, "is a directory, not a YAML spec") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, None, f"cannot read: {exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise SpecError(path, where, f"malformed YAML: {problem}",
                        "write plain YAML mappings, lists and scalars (no !!python tags)") from None
    if doc is None:
        raise SpecError(path, None, "the file is empty", "a spec is a YAML mapping with a model: section")
    if not isinstance(doc, dict):
        raise SpecError(path, None, f"the document is a {type(doc).__name__}, not a mapping",
                        "a spec is a YAML mapping with a model: section")
    return doc


def _normalize(doc, source, origins, prefix=""):
    """Bring shorthand into one form: ``drop_rate`` -> ``dropout``, ``norm: x`` -> ``{name: x}``.

    Records in ``origins`` which file set each dotted key, for error messages.
    """
    doc = copy.deepcopy(doc)
    model = doc.get("model")
    if isinstance(model, dict) and "drop_rate" in model:
        rate = model.pop("drop_rate")
        if isinstance(model.get("dropout"), dict):
            raise SpecError(source, "model.drop_rate", "given together with model.dropout",
                            "use drop_rate for one rate everywhere, or dropout: {embedding, attention, residual}")
        model["dropout"] = {place: rate for place in DROPOUT_PLACES}
    comps = doc.get("components")
    if isinstance(comps, dict):
        for kind, value in comps.items():
            if isinstance(value, str):
                comps[kind] = {"name": value}
    _record(doc, source, origins, prefix)
    return doc


def _record(node, source, origins, prefix):
    for key, value in node.items() if isinstance(node, dict) else ():
        dotted = f"{prefix}{key}"
        origins[dotted] = source
        _record(value, source, origins, dotted + ".")


def _merge(base, over):
    """Deep-merge ``over`` into ``base``. A component whose name changes starts from fresh params."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if key == "components" and isinstance(value, dict) and isinstance(out.get(key), dict):
            for kind, choice in value.items():
                old = out[key].get(kind)
                renamed = isinstance(choice, dict) and "name" in choice and (
                    not isinstance(old, dict) or old.get("name") != choice["name"])
                if isinstance(old, dict) and isinstance(choice, dict) and not renamed:
                    out[key][kind] = _merge(old, choice)
                else:
                    out[key][kind] = copy.deepcopy(choice)
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and key != "dropout":
            out[key] = _merge(out[key], value)
        elif key == "dropout" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_with_extends(path, origins, chain=()):
    path = Path(path)
    if path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise SpecError(path, "extends", f"cyclic extends: {cycle}", "a spec may not extend itself")
    doc = _normalize(_read_yaml(path), str(path), {})
    base = doc.pop("extends", None)
    if base is None:
        _record(doc, str(path), origins, "")
        return doc
    if not isinstance(base, str) or not base:
        raise SpecError(path, "extends", f"expected a file name, got {base!r}",
                        "a path relative to this spec's folder, e.g. extends: gpt2_small.yaml")
    base_path = path.parent / base
    if not base_path.is_file():
        raise SpecError(path, "extends", f"base spec {base_path} does not exist",
                        "a path relative to this spec's folder, e.g. extends: gpt2_small.yaml")
    merged = _merge(_read_with_extends(base_path, origins, (*chain, path.resolve())), doc)
    _record(doc, str(path), origins, "")
    return merged


def parse_override(text):
    """``"model.n_layers=2"`` -> ``("model.n_layers", 2)``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SpecError("--set", text, "expected KEY=VALUE with a dotted key",
                        "e.g. --set components.norm=layernorm or --set model.n_layers=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _nest(key, value):
    doc = value
    for part in reversed(key.split(".")):
        doc = {part: doc}
    return doc


# -- validation ------------------------------------------------------------------------------

class _Validator:
    def __init__(self, source, origins):
        self.source, self.origins = source, origins

    def error(self, key, problem, valid=None):
        return SpecError(self.origins.get(key, self.source), key, problem, valid)

    def unknown_keys(self, node, allowed, prefix):
        for key in node:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
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


def _validate(doc, source, origins, registry):
    v = _Validator(source, origins)
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
            raise KeyError(tokenizer)
        registry.component("tokenizer", tokenizer)
    except KeyError:
        raise v.error("tokenizer", unknown_name_message(
            "tokenizer", tokenizer, registry.names("tokenizer"))) from None

    if "model" not in doc:
        raise SpecError(source, "model", "missing",
                        "a spec needs model: {vocab_size, context_length, emb_dim, n_heads, n_layers}")
    model = v.mapping(doc["model"], "model")
    v.unknown_keys(model, MODEL_KEYS, "model.")
    sizes = {}
    for key in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
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
    config = ModelConfig(qkv_bias=qkv_bias, dropout=dropout, scale_embeddings=scale_embeddings,
                         logit_softcap=logit_softcap, **sizes)

    comps = v.mapping(doc.get("components", {}), "components")
    v.unknown_keys(comps, COMPONENT_KINDS, "components.")
    components = {}
    for kind in COMPONENT_KINDS:
        components[kind] = _validate_component(
            v, kind, comps.get(kind, {"name": DEFAULT_COMPONENTS[kind]}), registry)

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
        options[aname] = _check_params(v, key, analysis, v.mapping(given or {}, key))

    return Spec(name=name, seed=seed, tokenizer=tokenizer, model=config, components=components,
                plugins=tuple(plugins), analyses=options, description=description, source=source)


def _validate_component(v, kind, choice, registry):
    key = f"components.{kind}"
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
    given = {k: val for k, val in choice.items() if k != "name"}
    return ComponentChoice(kind, name, _check_params(v, key, component, given))


def _check_params(v, key, owner, given):
    """Merge ``given`` over ``owner``'s declared defaults, checking each name and type."""
    values = owner.defaults()
    declared = [p.name for p in owner.params]
    for pname, value in given.items():
        param = owner.param(pname)
        what = f"{getattr(owner, 'kind', 'analysis')} {owner.name!r}"
        if param is None:
            close = difflib.get_close_matches(str(pname), declared, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise v.error(f"{key}.{pname}", f"unknown parameter of {what}",
                          f"{hint}parameters: {', '.join(declared) or 'none'}")
        if param.type is float:
            value = _as_float(value)
        try:
            values[pname] = param.check(value)
        except ValueError as exc:
            raise v.error(f"{key}.{pname}", str(exc)) from None
    return values


# -- the entry point -------------------------------------------------------------------------

def load_spec(path, overrides=(), plugins=None):
    """Read, merge and validate a spec file; return a :class:`Spec`.

    ``overrides`` are ``"dotted.key=value"`` strings (the CLI's ``--set``), applied after
    ``extends``. ``plugins`` is the :class:`explorer.plugin_manager.Plugins` whose registry the
    component names are checked against; by default a fresh one, with the spec's own ``plugins:``
    loaded. Raises :class:`explorer.SpecError` with a one-line message.
    """
    origins = {}
    doc = _read_with_extends(path, origins)
    return _finish(doc, str(path), origins, overrides, plugins)


def spec_from_dict(doc, source="", overrides=(), plugins=None):
    """Validate a spec given as plain data (``Spec.to_dict()``, as a checkpoint carries it).

    Like :func:`load_spec` without the file: ``overrides`` and ``plugins`` work the same way, and
    ``source`` names where the data came from in error messages (and the folder that plugin
    paths are relative to). ``extends`` is not allowed: the data must be complete.
    """
    if not isinstance(doc, dict):
        raise SpecError(source, None, f"the spec is a {type(doc).__name__}, not a mapping",
                        "a spec is a mapping with a model: section")
    if "extends" in doc:
        raise SpecError(source, "extends", "not allowed in an embedded spec",
                        "embed the resolved spec (Spec.to_dict())")
    origins = {}
    return _finish(_normalize(doc, source, origins), source, origins, overrides, plugins)


def _finish(doc, source, origins, overrides, plugins):
    """Apply ``--set`` overrides, load the spec's own plugins, validate: the tail of both entry
    points above."""
    from .plugin_manager import get_plugin_manager

    for text in overrides:
        key, value = parse_override(text)
        over = _normalize(_nest(key, value), "--set", {})
        _record(over, f"--set {key}", origins, "")
        doc = _merge(doc, over)
    if plugins is None:
        plugins = get_plugin_manager()
    spec_plugins = doc.get("plugins", [])
    if isinstance(spec_plugins, list):
        for plugin in spec_plugins:
            if isinstance(plugin, str):
                candidate = Path(source).parent / plugin
                plugins.load(str(candidate) if plugin.endswith(".py") else plugin)
    spec = _validate(doc, source, origins, plugins.registry())
    spec.plugin_manager = plugins
    return spec
