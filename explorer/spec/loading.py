"""YAML specs: the entry points that read, merge and validate a spec into one typed object.

A spec is validated once, here, at the edge: everything after ``load_spec`` can trust it. Every
error names the file that set the offending key, the key, and what would be valid. Reading is
``explorer.spec.reading``, validation ``explorer.spec.validation``, the types ``explorer.spec.config``.
"""

from pathlib import Path

from explorer.spec.config import ComponentChoice, Dropout, ModelConfig, Spec  # noqa: F401 - the public types
from explorer.errors import PluginError, SpecError
from explorer.spec.catalog import resolve
from explorer.spec.reading import apply_overrides, normalize, read_with_extends
from explorer.spec.validation import validate


def load_spec(path, overrides=(), plugins=None, ignore_config_fields=()):
    """Read, merge and validate a spec file; return a :class:`Spec`.

    ``path`` is a file, or the name of a shipped spec (``"gpt2_small"``, ``"models/llama3_8b"``:
    :mod:`explorer.spec.catalog`) where no file of that path exists.
    ``overrides`` are ``"dotted.key=value"`` strings (the CLI's ``--set``), applied after
    ``extends``. ``plugins`` is the :class:`explorer.registry.plugin_manager.Plugins` whose registry the
    component names are checked against; by default a fresh one, with the spec's own ``plugins:``
    loaded. ``ignore_config_fields``: the fields of a Hugging Face config.json beside weights
    loaded into this spec's model to read as if absent (:attr:`Spec.ignore_config_fields`).
    Raises :class:`explorer.SpecError` with a one-line message.
    """
    path = resolve(path)
    origins = {}
    doc = read_with_extends(path, origins)
    return _finish(doc, str(path), origins, overrides, plugins, ignore_config_fields)


def spec_from_dict(doc, source="", overrides=(), plugins=None, ignore_config_fields=()):
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
    folder = Path(source).parent if source else Path.cwd()
    return _finish(normalize(doc, source, origins, folder), source, origins, overrides, plugins,
                   ignore_config_fields)


def _finish(doc, source, origins, overrides, plugins, ignore_config_fields=()):
    """Apply ``--set`` overrides, load the spec's own plugins, validate: the tail of both entry
    points above."""
    from explorer.registry.plugin_manager import get_plugin_manager

    doc = apply_overrides(doc, origins, overrides)
    if plugins is None:
        plugins = get_plugin_manager()
    spec_plugins = doc.get("plugins", [])
    for plugin in spec_plugins if isinstance(spec_plugins, list) else ():
        if isinstance(plugin, str):
            try:
                plugins.load(plugin)
            except PluginError as exc:
                raise SpecError(origins.get("plugins", source), "plugins", str(exc)) from None
    spec = validate(doc, source, origins, plugins.registry())
    spec.plugin_manager = plugins
    spec.overrides = tuple(overrides)
    spec.ignore_config_fields = tuple(ignore_config_fields)
    return spec
