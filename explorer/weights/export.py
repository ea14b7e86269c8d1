"""Exporting a model: to an explorer checkpoint, or to a registered format's target (``hf``).

A target's files are ``model.safetensors`` and, when the format gives one, ``config.json``, in
an output directory. Specs a format cannot express are refused before anything is written (or
built), with the spec key that is the reason.
"""

import json
from pathlib import Path

from ..errors import ExplorerError, UnknownNameError
from ..registry.plugin_manager import FORMAT_KIND
from . import formats
from .native import save_checkpoint
from .writing import atomic_write, save_sharded

EXPLORER_TARGET = "explorer"  # explorer's own checkpoint, in the core
MAX_SHARD_BYTES = 5 * 10**9  # transformers' save_pretrained default, "5GB"


def targets(registry):
    """Every name ``explorer export --to`` accepts: explorer's own, then the formats'."""
    named = (f.target for f in registry.formats.values() if f.target)
    return [EXPLORER_TARGET, *dict.fromkeys(named)]


def export_format(spec, target):
    """The first registered format for ``target`` that can express ``spec``.

    Raises an ExplorerError for an unknown target, or naming the spec key each format cannot
    express (``cannot export spec.yaml to Hugging Face GPT-2: components.positional is rope;
    GPT-2 has only learned``).
    """
    registry = formats.registry_of(spec)
    candidates = [f for f in registry.formats.values() if f.target == target]
    if not candidates:
        raise UnknownNameError("export target", target, targets(registry), where="--to", advice=(
            f"explorer plugins --kind {FORMAT_KIND} lists the formats"))
    reasons = []
    for fmt in candidates:
        problem = formats.unsupported(registry, fmt, spec)
        if problem is None:
            return fmt
        key, reason = problem
        reasons.append((fmt.label, f"{key} {reason}"))
    where = spec.source or spec.name
    if len(reasons) == 1:
        raise ExplorerError(f"cannot export {where} to {reasons[0][0]}: {reasons[0][1]}")
    raise ExplorerError(f"cannot export {where} to {target}: no format can express it ("
                        + "; ".join(f"{label}: {why}" for label, why in reasons) + ")")


def check_exportable(spec, target):
    """Raise before anything is built if ``spec`` cannot be exported to ``target``."""
    if target != EXPLORER_TARGET:
        export_format(spec, target)


def export(model, spec, target, out, max_shard_bytes=MAX_SHARD_BYTES):
    """Write ``model`` (built from ``spec``) for ``target``; returns the paths written.

    ``explorer``: ``out`` is the checkpoint file. Any other target: ``out`` is a directory that
    gets ``model.safetensors`` (above ``max_shard_bytes``, shards of at most that size and
    ``model.safetensors.index.json``, as transformers writes them) and ``config.json`` when the
    format writes one.
    """
    if target == EXPLORER_TARGET:
        return [save_checkpoint(model, spec, out)]
    fmt = export_format(spec, target)
    registry = formats.registry_of(spec)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExplorerError(f"{out}: exists and is not a directory")
    tensors = formats.call(registry, fmt, "from_model", model, spec)
    weights = save_sharded(tensors, out, max_shard_bytes, {"format": "pt"})
    if fmt.config is None:
        return weights
    config = out / "config.json"
    text = json.dumps(formats.call(registry, fmt, "config", model, spec), indent=2) + "\n"
    atomic_write(config, lambda tmp: Path(tmp).write_text(text))
    return [str(config), *weights]


def export_hf(model, spec, out_dir, max_shard_bytes=MAX_SHARD_BYTES):
    """Write ``out_dir/model.safetensors`` (or shards and their index) and
    ``out_dir/config.json`` that transformers loads (``from_pretrained(out_dir)``), through the
    first ``hf`` format that can express ``spec``. Returns the paths written."""
    return export(model, spec, "hf", out_dir, max_shard_bytes)
