"""Hugging Face ``config.json`` -> explorer spec, through the registered config converters.

The core knows only what every config shares (``model_type``, and the fields that never change
what a model computes, :data:`IGNORED`) and how a conversion records what it read and where each
spec key came from. What one model type's fields mean is its converter's: a plugin
(``explorer_config_converters``; the built-ins are ``explorer.plugins.converters``), so a
third-party architecture is one more plugin. A field that no one reads or ignores is refused,
never dropped: a config either becomes a spec that computes what transformers computes, or one
line naming the field that the spec cannot express.

Nothing here imports torch: a config converts and validates as fast as a spec loads.
"""

import json
from pathlib import Path

from explorer.errors import ExplorerError, PluginError, SpecError, UnknownNameError
from explorer.registry.plugin_manager import CONVERTER_KIND, get_plugin_manager

CONFIG_NAME = "config.json"
WIDTH = 100  # the longest line to_yaml writes on one line

# Fields any config may hold that do not change what the model computes, and why: bookkeeping,
# what transformers returns, tokenizer ids, decoding defaults (transformers' PretrainedConfig
# attributes, which older versions wrote into every config.json).
IGNORED = {
    "architectures": "the transformers class; model_type picks the converter",
    "model_type": "picks the converter",
    "_name_or_path": "where transformers loaded it from; names the spec",
    "_commit_hash": "the Hub revision it was loaded from",
    "_attn_implementation_autoset": "how transformers picked its attention kernel",
    "transformers_version": "the version that wrote the file",
    "torch_dtype": "the dtype the weights are stored in; analyses report fp32 and bf16 alike",
    "dtype": "the same, as transformers 5 names it",
    "use_bfloat16": "the same, as transformers 2 named it",
    "use_cache": "whether transformers keeps a KV cache; explorer's generate always does",
    "bos_token_id": "a tokenizer id", "eos_token_id": "a tokenizer id",
    "pad_token_id": "a tokenizer id", "sep_token_id": "a tokenizer id",
    "decoder_start_token_id": "a tokenizer id",
    "initializer_range": "how transformers initialises weights; explorer seeds its own",
    "tokenizer_class": "the tokenizer's class (explorer's specs use bytes unless GPT-2's)",
    "auto_map": "where remote code lives",
    "output_attentions": "what transformers returns", "output_hidden_states": "the same",
    "return_dict": "the same", "torchscript": "the same", "tf_legacy_loss": "the same",
    "chunk_size_feed_forward": "transformers' feed-forward in chunks: the same products",
    "id2label": "a classification head's labels", "label2id": "the same",
    "problem_type": "a classification head's loss", "finetuning_task": "a label",
    "prefix": "a prompt prefix for pipelines",
    "generation_config": "decoding defaults", "task_specific_params": "decoding defaults",
    **dict.fromkeys((
        "max_length", "min_length", "do_sample", "early_stopping", "num_beams",
        "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p",
        "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
        "output_scores", "return_dict_in_generate", "forced_bos_token_id",
        "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
        "suppress_tokens", "begin_suppress_tokens"), "a decoding default"),
}
# Fields any config may hold that change nothing at one value only (the encoder-decoder and
# pruning switches, off); at any other value they are refused.
IGNORED_WHEN = {"is_encoder_decoder": False, "is_decoder": False, "add_cross_attention": False,
                "tie_encoder_decoder": False, "cross_attention_hidden_size": None,
                "pruned_heads": {}}


class HFConfig:
    """A ``config.json`` being converted: the reads (each recorded, so the fields nobody read
    can be refused), the spec document being written, and the config fields each spec key came
    from (``origins``), which messages and checkpoint checks name."""

    def __init__(self, data, source):
        self.data = data
        self.source = source  # the file, for messages
        self.read = set()
        self.doc = {}
        self.origins = {}  # dotted spec key -> the config fields it was set from

    @property
    def model_type(self):
        return self.data.get("model_type")

    def get(self, field, default=None):
        """The field's value (null included), or ``default`` when it is absent; recorded as read.

        As in transformers, an absent field takes the config class's default, while null is a
        value: "none" or "derive it" (``sliding_window: null`` is no window,
        ``num_key_value_heads: null`` one per query head)."""
        self.read.add(field)
        return self.data.get(field, default)

    def ignore(self, *fields):
        """Mark fields as read without using them (they do not change the function)."""
        self.read.update(fields)

    def integer(self, field, default=..., minimum=None):
        """An integer field, or None when it is null (or absent with default None); ``...`` as
        ``default`` makes it required. The typed readers below read the same way."""
        value = self._typed(field, default, "an integer",
                            lambda v: isinstance(v, int) and not isinstance(v, bool))
        if value is not None and minimum is not None and value < minimum:
            raise self.refuse(field, f"must be >= {minimum}, got {value}")
        return value

    def number(self, field, default=...):
        value = self._typed(field, default, "a number",
                            lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
        return None if value is None else float(value)

    def flag(self, field, default=...):
        return self._typed(field, default, "true or false", lambda v: isinstance(v, bool))

    def text(self, field, default=...):
        return self._typed(field, default, "a string", lambda v: isinstance(v, str))

    def mapping(self, field):
        """A dict-valued field ({} when absent or null)."""
        return self._typed(field, {}, "a mapping", lambda v: isinstance(v, dict)) or {}

    def _typed(self, field, default, expected, ok):
        value = self._present(field, default)
        if value is not None and not ok(value):
            raise self.refuse(field, f"expected {expected}, got {_short(value)}")
        return value

    def _present(self, field, default):
        value = self.get(field, default)
        if value is ... or (value is None and default is ...):
            raise self.refuse(field, "missing", f"a {self.model_type} config.json sets it")
        return value

    def set(self, key, value, *fields):
        """Write the dotted spec ``key`` (``components.attention.n_kv_heads``), set from the
        config ``fields``."""
        node = self.doc
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
        self.origins[key] = fields

    def choose(self, kind, name, *fields):
        """``components.KIND.name: NAME``."""
        self.set(f"components.{kind}.name", name, *fields)

    def refuse(self, field, problem, valid=None):
        """The one-line error for a field the spec cannot express (raise it)."""
        return SpecError(self.source, field, problem, valid)


def read_config(path):
    """``(contents, path of the config.json)`` for a config file or a folder holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    if not path.is_file():
        raise ExplorerError(f"{path}: no such file" + (
            "" if path.name.endswith(".json") else f"; expected a folder with {CONFIG_NAME}"))
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ExplorerError(f"{path}: not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ExplorerError(f"{path}: holds a JSON {type(data).__name__}, not a mapping")
    return data, path


def is_hf_config(path):
    """Whether a command-line SPEC names a Hugging Face config: a ``.json`` file, or a folder
    that holds ``config.json``."""
    path = Path(path)
    return path.suffix == ".json" or (path.is_dir() and (path / CONFIG_NAME).is_file())


def convert(data, source, registry, ignore_fields=()):
    """``(spec document, origins)`` for the contents of a config.json, through the converter
    registered for its ``model_type``. ``ignore_fields`` are read as if the file did not have
    them (``--ignore-config-field``): the user's word that they do not change the model."""
    data = {k: v for k, v in data.items() if k not in ignore_fields}
    model_type = data.get("model_type")
    known = sorted(registry.converters)
    if not isinstance(model_type, str) or not model_type:
        raise SpecError(source, "model_type", f"missing or not a string ({model_type!r})",
                        f"a Hugging Face config names its model_type; converters: "
                        f"{', '.join(known) or 'none'}")
    converter = registry.converters.get(model_type)
    if converter is None:
        unknown = UnknownNameError("model_type", model_type, known, advice=(
            f"explorer plugins --kind {CONVERTER_KIND} lists the converters; a plugin can add one"))
        raise SpecError(source, "model_type", unknown.problem, unknown.valid)
    cfg = HFConfig(data, source)
    plugin = registry.provider[(CONVERTER_KIND, model_type)].plugin
    try:
        converter.load()(cfg)
    except ExplorerError:
        raise
    except Exception as exc:
        raise PluginError(f"plugin {plugin}: config converter {model_type!r} failed on {source}: "
                          f"{type(exc).__name__}: {exc}") from exc
    _refuse_unread(cfg, converter)
    doc = cfg.doc
    doc.setdefault("name", _name(data, source))
    doc.setdefault("description", f"from {Path(source).name} (model_type {model_type}) by "
                                  "explorer spec-from-hf")
    return doc, cfg.origins


def _refuse_unread(cfg, converter):
    """Refuse the first field the converter neither read nor ignores (at its value)."""
    harmless = {**IGNORED_WHEN, **converter.ignores_when}
    for field, value in cfg.data.items():
        if field in cfg.read or field in IGNORED or field in converter.ignores:
            continue
        ignore = (f"--ignore-config-field {field} (Python: ignore_config_fields=[{field!r}])")
        if field not in harmless:
            raise cfg.refuse(field, f"the {cfg.model_type} converter does not know this field "
                             f"(value {_short(value)}), so it cannot tell whether it changes the "
                             "model", f"if it does not, ignore it: {ignore}; if it does, ignore "
                             "it and set what it changes with --set KEY=VALUE, or extend the "
                             "converter")
        if _json(value) != _json(harmless[field]):
            raise cfg.refuse(field, f"{_short(value)}: the {cfg.model_type} converter knows that "
                             f"this field changes nothing only at {_short(harmless[field])}",
                             f"to convert the config without it: {ignore}, and set what it "
                             "changes with --set KEY=VALUE")


def _json(value):
    return json.dumps(value, sort_keys=True)  # false is not 0, nor 1.0 1


def _name(data, source):
    named = data.get("_name_or_path")
    if isinstance(named, str) and named.strip("/"):
        return named.rstrip("/").rsplit("/", 1)[-1]
    folder = Path(source).resolve().parent.name
    return folder or data["model_type"]


def _short(value):
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def spec_document(path, plugins=None, ignore_fields=()):
    """``(spec document, origins, config path)`` for the config at ``path``."""
    data, config_path = read_config(path)
    plugins = plugins or get_plugin_manager()
    doc, origins = convert(data, str(config_path), plugins.registry(), ignore_fields)
    return doc, origins, config_path


def spec_from_hf(path, overrides=(), plugins=None, ignore_config_fields=()):
    """The :class:`explorer.Spec` of the Hugging Face config at ``path`` (a ``config.json`` or
    its folder). Raises a one-line :class:`explorer.SpecError` for a field the spec cannot
    express; a spec key the validation refuses is named with the config field it came from.
    ``ignore_config_fields`` are read as if the file did not have them, here and in the
    config.json of weights loaded into the spec's model (``Spec.ignore_config_fields``)."""
    plugins = plugins or get_plugin_manager()
    return spec_from_document(*spec_document(path, plugins, ignore_config_fields), overrides,
                              plugins, ignore_config_fields)


def spec_from_document(doc, origins, config_path, overrides=(), plugins=None,
                       ignore_config_fields=()):
    """The :class:`explorer.Spec` of a converted document (:func:`spec_document`'s answer), so
    that a caller who also shows the document converts the config once."""
    from explorer.spec.loading import spec_from_dict

    try:
        return spec_from_dict(doc, source=str(config_path), overrides=overrides, plugins=plugins,
                              ignore_config_fields=ignore_config_fields)
    except SpecError as exc:
        fields = origins.get(exc.key or "")
        if exc.source != str(config_path) or not fields:
            raise
        raise SpecError(exc.source, f"{', '.join(fields)} (spec key {exc.key})", exc.problem,
                        exc.valid) from None


HEAD_KEYS = ("name", "description", "seed", "tokenizer")  # the keys above model:, in order


def shown_document(doc):
    """The spec document as spec-from-hf shows it (its YAML, or ``--format json``): the keys in
    the shipped specs' order, components in kind order, a component without parameters by its
    name alone."""
    from explorer.registry.components import COMPONENT_KINDS

    shown = {key: doc[key] for key in HEAD_KEYS if key in doc}
    shown["model"] = doc["model"]
    components = doc.get("components", {})
    shown["components"] = {kind: _by_name(components[kind])
                           for kind in sorted(components, key=COMPONENT_KINDS.index)}
    if doc.get("layers"):
        shown["layers"] = doc["layers"]
    return shown


def _by_name(choice):
    """``{name: rmsnorm}`` as ``rmsnorm``, as the shipped specs write a component without
    parameters."""
    return choice["name"] if isinstance(choice, dict) and list(choice) == ["name"] else choice


def to_yaml(doc, config_path):
    """The spec document as YAML, in the shipped specs' layout (:func:`shown_document`):
    headed by where it came from, one line per model key and per component (one too long for a
    line, a key per line), one line per ``layers:`` entry."""
    doc = shown_document(doc)
    lines = [f"# explorer spec-from-hf {config_path}"]
    lines += [f"{key}: {_flow(doc[key])}" for key in HEAD_KEYS if key in doc]
    lines.append("model:")
    lines += [f"  {key}: {_flow(value)}" for key, value in doc["model"].items()]
    lines.append("components:")
    for kind, choice in doc["components"].items():
        line = f"  {kind}: {_flow(choice)}"
        if len(line) > WIDTH:
            line = f"  {kind}:\n" + "\n".join(f"    {k}: {_flow(v)}" for k, v in choice.items())
        lines.append(line)
    if doc.get("layers"):
        lines.append("layers:")
        lines += [f"  - {_flow(entry)}" for entry in doc["layers"]]
    return "\n".join(lines) + "\n"


def _flow(value):
    """``value`` as YAML on one line (1.0e-05, true, {name: gqa, n_kv_heads: 8})."""
    import yaml

    text = yaml.safe_dump({"k": value}, default_flow_style=True, sort_keys=False,
                          width=float("inf"))
    return text.strip()[len("{k: "):-1]
