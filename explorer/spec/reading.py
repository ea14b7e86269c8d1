"""Reading YAML specs into plain data: files, ``extends``, ``--set`` overrides, plugin paths.

Every dotted key is recorded with the file (or ``--set``) that wrote it, so validation can name
the right one in an error. Nothing here checks values: that is ``explorer.spec.validation``'s job.
"""

import copy
import os
from pathlib import Path

import yaml

from explorer.spec.config import DROPOUT_PLACES
from explorer.errors import SpecError
from explorer.registry.plugin_manager import is_plugin_path

# How deep a YAML document may nest (a spec needs about 5 levels). PyYAML builds a document
# recursively, so thousands of nested [ would exhaust Python's stack before any check ran.
MAX_DEPTH = 100


class NestingError(Exception):
    """A YAML document nested deeper than MAX_DEPTH, or holding itself through an alias."""

    def __init__(self, mark, problem, valid):
        super().__init__(problem)
        self.mark, self.problem, self.valid = mark, problem, valid

    @property
    def where(self):
        return f"line {self.mark.line + 1}, column {self.mark.column + 1}"


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a document nested more than MAX_DEPTH levels, and an
    alias inside the node it names (``&a [*a]``: a structure that contains itself)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._open = []  # the anchors (or None) of the nodes being composed, outermost first

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) and event.anchor in self._open:
            raise NestingError(event.start_mark, f"*{event.anchor} is inside the node it names "
                               "(a structure that holds itself)",
                               "an alias may repeat a node elsewhere, not inside itself")
        if len(self._open) >= MAX_DEPTH:
            raise NestingError(event.start_mark, f"nested more than {MAX_DEPTH} levels deep",
                               f"at most {MAX_DEPTH} levels of mappings and lists")
        self._open.append(getattr(event, "anchor", None))
        try:
            return super().compose_node(parent, index)
        finally:
            self._open.pop()


def load_yaml(text):
    """``yaml.safe_load(text)``, refusing what would nest too deep (:class:`NestingError`)."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path, what="YAML spec", shape="a spec is a YAML mapping with a model: section"):
    """The YAML mapping in ``path``, or a SpecError saying why there is none. ``what`` names the
    kind of file in messages and ``shape`` says what it should hold."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(path, None, "no such file") from None
    except IsADirectoryError:
        raise SpecError(path, None, f"is a directory, not a {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path, None, f"cannot read: {exc}") from None
    try:
        doc = load_yaml(text)
    except NestingError as exc:
        raise SpecError(path, exc.where, exc.problem, exc.valid) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        # safe_load refuses tags that would construct Python objects with a ConstructorError.
        tagged = isinstance(exc, yaml.constructor.ConstructorError)
        raise SpecError(path, where, f"malformed YAML: {problem}",
                        "write plain YAML mappings, lists and scalars (no !!python tags)"
                        if tagged else None) from None
    if doc is None:
        raise SpecError(path, None, "the file is empty", shape)
    if not isinstance(doc, dict):
        raise SpecError(path, None, f"the document is a {type(doc).__name__}, not a mapping",
                        shape)
    return doc


def normalize(doc, source, origins, folder, prefix=""):
    """Bring shorthand into one form: ``drop_rate`` -> ``dropout``, ``norm: x`` -> ``{name: x}``,
    plugin file paths -> absolute paths (relative ones are relative to ``folder``).

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
    plugins = doc.get("plugins")
    if isinstance(plugins, list):
        doc["plugins"] = [os.path.abspath(Path(folder) / p) if isinstance(p, str) and p
                          and is_plugin_path(p) else p for p in plugins]
    record(doc, source, origins, prefix)
    return doc


def record(node, source, origins, prefix):
    for key, value in node.items() if isinstance(node, dict) else ():
        dotted = f"{prefix}{key}"
        origins[dotted] = source
        record(value, source, origins, dotted + ".")


def merge(base, over):
    """Deep-merge ``over`` into ``base``. A component whose name changes starts from fresh params."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if key == "components" and isinstance(value, dict) and isinstance(out.get(key), dict):
            for kind, choice in value.items():
                old = out[key].get(kind)
                renamed = isinstance(choice, dict) and "name" in choice and (
                    not isinstance(old, dict) or old.get("name") != choice["name"])
                if isinstance(old, dict) and isinstance(choice, dict) and not renamed:
                    out[key][kind] = merge(old, choice)
                else:
                    out[key][kind] = copy.deepcopy(choice)
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and key != "dropout":
            out[key] = merge(out[key], value)
        elif key == "dropout" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_with_extends(path, origins, chain=()):
    """The spec in ``path`` merged over the specs it ``extends``; plugin paths resolved against
    the folder of the file that wrote them."""
    path = Path(path)
    if path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise SpecError(path, "extends", f"cyclic extends: {cycle}", "a spec may not extend itself")
    doc = normalize(read_yaml(path), str(path), {}, path.parent)
    base = doc.pop("extends", None)
    if base is None:
        record(doc, str(path), origins, "")
        return doc
    if not isinstance(base, str) or not base:
        raise SpecError(path, "extends", f"expected a file name, got {base!r}",
                        "a path relative to this spec's folder, e.g. extends: gpt2_small.yaml")
    base_path = path.parent / base
    if not base_path.is_file():
        raise SpecError(path, "extends", f"base spec {base_path} does not exist",
                        "a path relative to this spec's folder, e.g. extends: gpt2_small.yaml")
    merged = merge(read_with_extends(base_path, origins, (*chain, path.resolve())), doc)
    record(doc, str(path), origins, "")
    return merged


def parse_override(text):
    """``"model.n_layers=2"`` -> ``("model.n_layers", 2)``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SpecError("--set", text, "expected KEY=VALUE with a dotted key",
                        "e.g. --set components.norm=layernorm or --set model.n_layers=2")
    if key.count(".") >= MAX_DEPTH:
        raise SpecError("--set", key[:60] + "...", f"the key is nested more than {MAX_DEPTH} "
                        "levels deep", "a spec key as a file writes it, e.g. model.n_layers")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except NestingError as exc:
        raise SpecError(f"--set {key}", None, f"the value is {exc.problem}", exc.valid) from None
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(doc, origins, overrides):
    """``doc`` with each ``KEY=VALUE`` merged in; a plugin path given with --set is relative to
    the working directory, and every key it sets is recorded as coming from ``--set KEY``."""
    for text in overrides:
        key, value = parse_override(text)
        over = normalize(_nest(key, value), "--set", {}, Path.cwd())
        record(over, f"--set {key}", origins, "")
        doc = merge(doc, over)
    return doc


def _nest(key, value):
    doc = value
    for part in reversed(key.split(".")):
        doc = {part: doc}
    return doc
