"""Explorer's own checkpoints: the model's parameters in safetensors, the spec in the metadata.

The tensors keep the model's own ``state_dict`` names, whatever its components are, so this format
needs no mapping and lives in the core. ``explorer build ckpt.safetensors`` needs no YAML.
"""

import json
from pathlib import Path

from ..errors import ExplorerError
from ..registry.params import REQUIRED, params_of
from ..spec.config import ModelConfig
from ..spec.layers import resolve_dicts
from .diagnostics import Mismatch
from .files import is_safetensors, read_safetensors, weight_files
from .writing import save_safetensors

SPEC_METADATA_KEY = "explorer.spec.loading"  # safetensors metadata: the resolved spec, as JSON


def _weight_keys():
    """The model keys whose values change what the weights compute (all but the numerics-only
    dropout), each with what a saved spec written before the key existed had: its default."""
    return {p.name: None if p.default is REQUIRED else p.default
            for p in params_of(ModelConfig) if not p.numerics_only}


def is_native(ckpt):
    return SPEC_METADATA_KEY in ckpt.metadata


def saved_spec(metadata, path):
    """The spec dict an explorer checkpoint's metadata carries."""
    try:
        doc = json.loads(metadata[SPEC_METADATA_KEY])
    except ValueError as exc:
        raise ExplorerError(f"{path}: the spec in its metadata is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ExplorerError(f"{path}: the spec in its metadata is a {type(doc).__name__}, "
                            "not a mapping")
    return doc


def save_checkpoint(model, spec, path):
    """Write ``model``'s parameters to a safetensors file whose metadata carries ``spec``.

    Buffers (causal masks, rotary tables) are left out: they are rebuilt from the spec. A tied
    parameter is stored once, under its first name. Returns the path.
    """
    from .. import __version__

    params = dict(model.named_parameters())  # each tensor once, under its first name
    # Plugin files relative to the checkpoint's folder: loading resolves them against it.
    saved = spec.to_dict(relative_to=Path(path).parent)
    metadata = {"format": "pt", SPEC_METADATA_KEY: json.dumps(saved),
                "explorer.version": __version__}
    save_safetensors(params, path, metadata)
    return str(path)


def spec_from_checkpoint(path, overrides=(), plugins=None, ignore_config_fields=()):
    """The :class:`explorer.Spec` an explorer checkpoint was saved with (``--set`` overrides apply)."""
    from ..spec.loading import spec_from_dict

    files = weight_files(path)
    if len(files) != 1 or not is_safetensors(files[0]):
        raise ExplorerError(f"{path}: not an explorer checkpoint (a safetensors file written by "
                            "explorer); give a YAML spec and --weights instead")
    _, metadata = read_safetensors(files[0], tensors_too=False)
    if SPEC_METADATA_KEY not in metadata:
        raise ExplorerError(f"{files[0]}: has no explorer spec in its metadata (a Hugging Face or "
                            f"other safetensors file); give a YAML spec and --weights {path}")
    return spec_from_dict(saved_spec(metadata, files[0]), source=str(files[0]),
                          overrides=overrides, plugins=plugins,
                          ignore_config_fields=ignore_config_fields)


def spec_mismatches(saved, spec):
    """A :class:`Mismatch` for each key where the saved spec dict and ``spec`` differ, in order.

    Left out: what does not change what the weights compute (dropout rates, the seed, the name,
    the analyses) and component parameters marked ``numerics_only`` (how the same function is
    computed, such as ``impl``).
    """
    now = spec.to_dict()
    registry = spec.plugin_manager.registry() if spec.plugin_manager else None
    diffs = []
    if saved.get("tokenizer") != now["tokenizer"]:
        diffs.append(("tokenizer", saved.get("tokenizer"), now["tokenizer"]))
    for key, default in _weight_keys().items():
        old = saved.get("model", {}).get(key, default)
        new = now["model"].get(key, default)  # a standard spec leaves the μP keys out
        if old != new:
            diffs.append((f"model.{key}", old, new))
    comps = saved.get("components", {})
    for kind, choice in now["components"].items():
        diffs += _choice_differences(f"components.{kind}", kind, comps.get(kind, {}), choice,
                                     registry)
    if not diffs and _layers_differ(saved, now, registry):
        # The layers: lists as a whole: the one key that sets what differs, whichever layer.
        diffs.append(("layers", saved.get("layers", []), now.get("layers", [])))
    return [Mismatch("saved", key=key, have=old, current=new, value=old) for key, old, new in diffs]


def _choice_differences(key, kind, old, choice, registry):
    """``(key, saved, now)`` for a component's name, else each parameter that changes the weights
    (not ``numerics_only``); a parameter added since the checkpoint was saved has its default."""
    if old.get("name") != choice["name"]:
        return [(key, old.get("name"), choice["name"])]
    component = registry.components.get((kind, choice["name"])) if registry else None
    defaults = component.defaults() if component else {}
    diffs = []
    for p in sorted(set(old) | set(choice)):
        param = component.param(p) if component else None
        if p == "name" or (param is not None and param.numerics_only):
            continue
        saved_value = old.get(p, defaults.get(p))
        if saved_value != choice.get(p):
            diffs.append((f"{key}.{p}", saved_value, choice.get(p)))
    return diffs


def _layers_differ(saved, now, registry):
    """Whether any block's resolved choices (``layers:`` applied) differ between the specs."""
    for old_layer, new_layer in zip(resolve_dicts(saved), resolve_dicts(now)):
        for kind, choice in new_layer.items():
            if _choice_differences(kind, kind, old_layer.get(kind, {}), choice, registry):
                return True
    return False
