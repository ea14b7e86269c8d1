"""The registered checkpoint formats: which one reads a file, and calls into their plugins.

Formats come from the ``explorer_checkpoint_formats`` hook (built-ins in
``explorer.plugins.checkpoints``). A format's callable that fails with anything but an
ExplorerError is reported as a fault of the plugin that registered it.
"""

from ..errors import ExplorerError, PluginError
from ..registry.plugin_manager import FORMAT_KIND
from .diagnostics import Mismatch


def registry_of(spec):
    from ..registry.plugin_manager import get_plugin_manager

    return (spec.plugin_manager or get_plugin_manager()).registry()


def call(registry, fmt, part, *args):
    """Call ``fmt``'s ``part`` ("detect", "to_model", ...) with ``args``, naming its plugin if it
    breaks."""
    plugin = registry.provider[(FORMAT_KIND, fmt.name)].plugin
    try:
        function = fmt.load(part)
    except Exception as exc:
        raise PluginError(f"plugin {plugin}: cannot load {part} of checkpoint format "
                          f"{fmt.name!r}: {type(exc).__name__}: {exc}") from exc
    try:
        return function(*args)
    except ExplorerError:
        raise
    except Exception as exc:
        raise PluginError(f"plugin {plugin}: checkpoint format {fmt.name!r} failed in {part}: "
                          f"{type(exc).__name__}: {exc}") from exc


def detect(registry, ckpt):
    """The first registered format that recognises ``ckpt``."""
    for fmt in registry.formats.values():
        if fmt.detect is not None and call(registry, fmt, "detect", ckpt):
            return fmt
    shown = ", ".join(ckpt.names[:4]) or "no tensors"
    readable = [f.name for f in registry.formats.values() if f.detect is not None]
    raise ExplorerError(
        f"{ckpt.path}: no registered checkpoint format recognises it (it has {shown}); formats: "
        f"{', '.join(readable) or 'none'} (explorer plugins --kind {FORMAT_KIND}), or an explorer "
        "checkpoint (a safetensors file with the spec in its metadata)")


def unsupported(registry, fmt, spec):
    """``(spec key, reason)`` for the first key ``fmt`` cannot express, or None."""
    return call(registry, fmt, "unsupported", spec) if fmt.unsupported is not None else None


def to_model(registry, fmt, ckpt, model, spec):
    """The checkpoint's tensors under the model's names, and each one's name in the file."""
    mapped = call(registry, fmt, "to_model", ckpt, model, spec)
    if not isinstance(mapped, dict) or not all(
            isinstance(v, tuple) and len(v) == 2 for v in mapped.values()):
        plugin = registry.provider[(FORMAT_KIND, fmt.name)].plugin
        raise PluginError(f"plugin {plugin}: checkpoint format {fmt.name!r}: to_model returned "
                          f"{type(mapped).__name__}; expected a dict of name -> (name in the "
                          "file, tensor)")
    tensors = {name: tensor for name, (_, tensor) in mapped.items()}
    origin = {name: src for name, (src, _) in mapped.items() if src != name}
    return tensors, origin


def mismatches(registry, fmt, ckpt, spec):
    """What ``fmt``'s own ``check`` finds (config values the tensors cannot show)."""
    found = list(call(registry, fmt, "check", ckpt, spec) or ()) if fmt.check is not None else []
    for m in found:
        if not isinstance(m, Mismatch):
            plugin = registry.provider[(FORMAT_KIND, fmt.name)].plugin
            raise PluginError(f"plugin {plugin}: checkpoint format {fmt.name!r}: check returned "
                              f"{type(m).__name__}; expected explorer.weights.Mismatch records")
    return found
