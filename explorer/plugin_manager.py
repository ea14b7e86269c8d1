"""The plugin manager: built-in plugins, entry points and user plugins, registered alike.

As in pytest (``default_plugins``) and datasette (``DEFAULT_PLUGINS``), the built-in plugins are
ordinary plugin modules that go through the same ``_register`` call as the plugins found in the
``explorer`` entry-point group or named on the command line or in a spec. A plugin that fails to
import, raises in a hook or returns something malformed is reported by name and skipped; the
others keep working.
"""

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

import pluggy

from . import hookspecs
from .components import (COMPONENT_KINDS, REGISTERED_KINDS, Analysis, CheckpointFormat, Component,
                         Provider)
from .errors import PluginError

ENTRY_POINT_GROUP = "explorer"
DISABLE_ENV = "EXPLORER_DISABLE_PLUGINS"

# Module names only: the core never imports a concrete component, it registers these modules the
# way it registers any third-party plugin.
DEFAULT_PLUGINS = (
    "explorer.plugins.norm",
    "explorer.plugins.activation",
    "explorer.plugins.ffn",
    "explorer.plugins.moe",
    "explorer.plugins.attention",
    "explorer.plugins.mla",
    "explorer.plugins.positional",
    "explorer.plugins.residual",
    "explorer.plugins.weight_tying",
    "explorer.plugins.tokenizers",
    "explorer.plugins.checkpoints",
    "explorer.plugins.analyses.params",
    "explorer.plugins.analyses.memory",
    "explorer.plugins.analyses.gradflow",
    "explorer.plugins.analyses.samples",
    "explorer.plugins.analyses.flops",
    "explorer.plugins.analyses.summary",
    "explorer.plugins.analyses.train",
)

hookimpl = pluggy.HookimplMarker("explorer")


def _own_distribution():
    try:
        return f"explorer {importlib.metadata.version('explorer')}"
    except importlib.metadata.PackageNotFoundError:
        return "explorer (not installed)"


class Plugins:
    """A pluggy PluginManager plus what explorer needs to report about each plugin."""

    def __init__(self):
        self.pm = pluggy.PluginManager("explorer")
        self.pm.add_hookspecs(hookspecs)
        self.providers = {}  # plugin name -> Provider
        self.broken = {}  # plugin name -> one-line reason it was skipped
        self.blocked = set()  # plugin names blocked by EXPLORER_DISABLE_PLUGINS
        self._registry = None

    def register(self, plugin, name, distribution=""):
        """The one registration call, for built-ins and third-party plugins alike."""
        if name in self.blocked or self.pm.is_registered(plugin) or self.pm.has_plugin(name):
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy validates hookimpl names and signatures
            self.broken[name] = f"cannot register: {exc}"
            return
        self.providers[name] = Provider(name, distribution)
        self._registry = None

    def unregister(self, name):
        self.pm.unregister(name=name)
        self.providers.pop(name, None)
        self._registry = None

    def load_module(self, module_name, name=None, distribution=""):
        """Import a module by dotted name and register it; an import failure marks it broken."""
        name = name or module_name
        if name in self.blocked:
            return
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            self.broken[name] = f"failed to import {module_name}: {type(exc).__name__}: {exc}"
            return
        self.register(module, name, distribution)

    def load_path(self, path, distribution=""):
        """Import a plugin from a ``.py`` file and register it under the file's resolved path,
        so one file named by two relative paths (CLI and spec, two specs) loads once."""
        path = Path(path)
        if not path.is_file():
            raise PluginError(f"plugin file {path} does not exist")
        name = str(path.resolve())
        if {name, str(path)} & self.blocked or self.pm.has_plugin(name):
            return
        # Unique per file: two plugins both called plugin.py must not share a module.
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        module_name = f"explorer_plugin_{path.stem}_{digest}"
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            self.broken[name] = f"failed to import {path}: {type(exc).__name__}: {exc}"
            return
        self.register(module, name, distribution)

    def load(self, plugin):
        """Load a plugin named on the command line or in a spec: a file path or a module name."""
        if plugin.endswith(".py") or os.sep in plugin or "/" in plugin:
            self.load_path(plugin)
        else:
            self.load_module(plugin)

    def load_entry_points(self):
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ""
            if ep.name in self.blocked or self.pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self.broken[ep.name] = f"failed to import {ep.value}: {type(exc).__name__}: {exc}"
                continue
            self.register(plugin, ep.name, dist)

    # -- what the plugins contribute ---------------------------------------------------------

    def _call_each(self, hook_name):
        """Call one hook on every plugin separately, so one that raises spoils only itself."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():  # registration order
            name = self.pm.get_name(impl.plugin)
            try:
                result = impl.function()
            except Exception as exc:
                self.broken[name] = f"{hook_name} raised {type(exc).__name__}: {exc}"
                continue
            yield name, result

    def registry(self):
        if self._registry is None:
            self._registry = Registry.collect(self)
        return self._registry


FORMAT_KIND = "checkpoint_format"  # how `explorer plugins` and providers name checkpoint formats


class Registry:
    """Every registered component, analysis and checkpoint format, keyed by (kind, name) and by
    name."""

    def __init__(self):
        self.components = {}  # (kind, name) -> Component
        self.analyses = {}  # name -> Analysis
        self.formats = {}  # name -> CheckpointFormat, in registration order (detection order)
        self.provider = {}  # (kind, name) or ("analysis", name) -> Provider
        self.broken = {}  # plugin name -> reason

    @classmethod
    def collect(cls, plugins):
        reg = cls()
        for name, items in plugins._call_each("explorer_components"):
            reg._add_all(plugins, name, items, Component, reg._add_component)
        for name, items in plugins._call_each("explorer_analyses"):
            reg._add_all(plugins, name, items, Analysis, reg._add_analysis)
        for name, items in plugins._call_each("explorer_checkpoint_formats"):
            reg._add_all(plugins, name, items, CheckpointFormat, reg._add_format)
        for name, reason in plugins.broken.items():
            reg._break(name, reason)
        return reg

    def _add_all(self, plugins, name, items, expected, add):
        provider = plugins.providers.get(name, Provider(name))
        if items is None:
            return
        if not isinstance(items, (list, tuple)):
            self._break(name, f"hook returned {type(items).__name__} {_short(items)}; "
                              f"expected a list of explorer.{expected.__name__}")
            return
        for item in items:
            if not isinstance(item, expected):
                self._break(name, f"hook returned a list holding {type(item).__name__} "
                                  f"{_short(item)}; expected only explorer.{expected.__name__}")
                continue
            problem = add(item, provider)
            if problem:
                self._break(name, problem)

    def _break(self, name, problem):
        """Record a problem with a plugin; a plugin with several keeps them all."""
        self.broken[name] = f"{self.broken[name]}; {problem}" if name in self.broken else problem

    def _add_component(self, comp, provider):
        if comp.kind not in REGISTERED_KINDS:
            return (f"component {comp.name!r} has unknown kind {comp.kind!r}; "
                    f"kinds are {', '.join(REGISTERED_KINDS)}")
        key = (comp.kind, comp.name)
        if key in self.components:
            return (f"{comp.kind} {comp.name!r} is already registered by "
                    f"{self.provider[key].plugin}; this one was skipped")
        self.components[key] = comp
        self.provider[key] = provider

    def _add_analysis(self, analysis, provider):
        key = ("analysis", analysis.name)
        if analysis.name in self.analyses:
            return (f"analysis {analysis.name!r} is already registered by "
                    f"{self.provider[key].plugin}; this one was skipped")
        self.analyses[analysis.name] = analysis
        self.provider[key] = provider

    def _add_format(self, fmt, provider):
        problem = fmt.problem()
        if problem:
            return problem
        key = (FORMAT_KIND, fmt.name)
        if fmt.name in self.formats:
            return (f"checkpoint format {fmt.name!r} is already registered by "
                    f"{self.provider[key].plugin}; this one was skipped")
        self.formats[fmt.name] = fmt
        self.provider[key] = provider

    def names(self, kind):
        return sorted(name for k, name in self.components if k == kind)

    def component(self, kind, name):
        """The component ``kind``/``name``, or a KeyError whose message lists the valid names."""
        try:
            return self.components[(kind, name)]
        except KeyError:
            what = kind if kind not in COMPONENT_KINDS else f"{kind} component"
            raise KeyError(unknown_name_message(what, name, self.names(kind))) from None

    def analysis(self, name):
        try:
            return self.analyses[name]
        except KeyError:
            raise KeyError(unknown_name_message("analysis", name, sorted(self.analyses))) from None


def _short(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def unknown_name_message(what, name, valid):
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {name!r}{hint}; registered: {', '.join(valid) or 'none'}"


def get_plugin_manager(entry_points=True, plugins=(), defaults=True):
    """A fresh plugin manager: the built-ins, then entry points, then ``plugins`` (names/paths).

    ``EXPLORER_DISABLE_PLUGINS=a,b`` blocks plugins by registered name.
    """
    manager = Plugins()
    manager.blocked = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    if defaults:
        own = _own_distribution()
        for module_name in DEFAULT_PLUGINS:
            manager.load_module(module_name, distribution=own)
    if entry_points:
        manager.load_entry_points()
    for plugin in plugins:
        manager.load(plugin)
    return manager
