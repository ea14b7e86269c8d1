"""The plugin manager: built-in plugins, entry points and user plugins, registered alike.

As in pytest (``default_plugins``) and datasette (``DEFAULT_PLUGINS``), the built-in plugins are
ordinary plugin modules that go through the same ``register`` call as the plugins found in the
``explorer`` entry-point group or named on the command line or in a spec. An installed plugin
that fails to import, raises in a hook or returns something malformed is reported by name and
skipped; the others keep working. A plugin the user named (``-p``, ``--plugin``, a spec's
``plugins:``) that fails to import or register is an error: the user asked for it.
"""

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

import pluggy

from explorer.registry import hookspecs
from explorer.registry.components import (COMPONENT_KINDS, REGISTERED_KINDS, Analysis, CheckpointFormat, Component,
                         ConfigConverter, Provider)
from explorer.registry.trackers import Tracker
from explorer.errors import PluginError, UnknownNameError

ENTRY_POINT_GROUP = "explorer"
DISABLE_ENV = "EXPLORER_DISABLE_PLUGINS"
TRACE_ENV = "EXPLORER_TRACE_PLUGINS"

# Module names only: the core never imports a concrete component, it registers these modules the
# way it registers any third-party plugin.
DEFAULT_PLUGINS = (
    "explorer.plugins.norm",
    "explorer.plugins.activation",
    "explorer.plugins.ffn",
    "explorer.plugins.attention",
    "explorer.plugins.positional",
    "explorer.plugins.residual",
    "explorer.plugins.weight_tying",
    "explorer.plugins.tokenizer",
    "explorer.plugins.checkpoints",
    "explorer.plugins.converters",
    "explorer.plugins.trackers",
    "explorer.plugins.tasks",
    "explorer.plugins.analyses.params",
    "explorer.plugins.analyses.memory",
    "explorer.plugins.analyses.gradflow",
    "explorer.plugins.analyses.samples",
    "explorer.plugins.analyses.flops",
    "explorer.plugins.analyses.summary",
    "explorer.plugins.analyses.train",
    "explorer.plugins.analyses.coordcheck",
)

hookimpl = pluggy.HookimplMarker("explorer")


def _own_distribution():
    try:
        return f"explorer {importlib.metadata.version('explorer')}"
    except importlib.metadata.PackageNotFoundError:
        return "explorer (not installed)"


def is_plugin_path(entry):
    """Whether a ``-p``/``plugins:`` entry names a ``.py`` file (else it is a module name)."""
    return entry.endswith(".py") or "/" in entry or os.sep in entry


class Plugins:
    """A pluggy PluginManager plus what explorer needs to report about each plugin."""

    def __init__(self):
        self.pm = pluggy.PluginManager("explorer")
        self.pm.add_hookspecs(hookspecs)
        self.providers = {}  # plugin name -> Provider
        self.broken = {}  # plugin name -> one-line reason it was skipped
        self._registry = None
        self._registry_of = frozenset()  # the plugins self._registry was collected from
        # Writes only once EXPLORER_TRACE_PLUGINS gives pluggy's tracer a writer.
        self._trace = self.pm.trace.root.get("explorer")

    @property
    def blocked(self):
        """The plugin names blocked with ``pm.set_blocked`` (EXPLORER_DISABLE_PLUGINS)."""
        return sorted(name for name, plugin in self.pm.list_name_plugin() if plugin is None)

    def _skip(self, *names):
        """Whether a plugin is blocked or already registered under one of ``names``."""
        return any(self.pm.is_blocked(n) or self.pm.has_plugin(n) for n in names)

    def register(self, plugin, name, distribution=""):
        """The one registration call, for built-ins and third-party plugins alike.

        A plugin pluggy refuses (a misspelt hook, a wrong signature) is recorded as broken.
        """
        try:
            self._register(plugin, name, distribution)
        except PluginError as exc:
            self.broken[name] = str(exc)

    def _register(self, plugin, name, distribution):
        if self._skip(name) or self.pm.is_registered(plugin):
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy validates hookimpl names and signatures
            raise PluginError(f"cannot register: {exc}") from None
        self.providers[name] = Provider(name, distribution)
        self._registry = None

    def load_module(self, module_name, distribution=""):
        """Import an installed or built-in module and register it; a failure marks it broken."""
        if self._skip(module_name):
            return
        try:
            self._register(_import_module(module_name), module_name, distribution)
        except PluginError as exc:
            self.broken[module_name] = str(exc)

    def load_builtin(self, module_name, distribution=""):
        """Import and register one of explorer's own plugin modules. Unlike an installed plugin,
        a built-in that fails (a syntax error, a missing dependency) is an error naming it: the
        registry would otherwise be silently short of the components everything else expects."""
        if self._skip(module_name):
            return
        try:
            self._register(_import_module(module_name), module_name, distribution)
        except PluginError as exc:
            raise PluginError(f"explorer's built-in plugin {module_name} is broken: {exc}; "
                              "reinstall explorer") from None

    def load(self, plugin):
        """Load a plugin the user named (``-p``, ``--plugin``, a spec's ``plugins:``): a ``.py``
        file, registered under its resolved path (so one file named by two relative paths loads
        once), or a module name. Raises PluginError, naming it, if it fails to import or
        register."""
        if not is_plugin_path(plugin):
            if not self._skip(plugin):
                self._register(_import_module(plugin), plugin, "")
            return
        path = Path(plugin)
        if not path.is_file():
            raise PluginError(f"plugin file {path} does not exist")
        name = str(path.resolve())
        if not self._skip(name, str(path)):
            self._register(_import_file(path, name), name, "")

    def load_entry_points(self):
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ""
            if self._skip(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self.broken[ep.name] = f"failed to import {ep.value}: {type(exc).__name__}: {exc}"
                continue
            self.register(plugin, ep.name, dist)

    # -- what the plugins contribute ---------------------------------------------------------

    def _call_each(self, hook_name, **kwargs):
        """Call one hook through pluggy on every plugin separately (registration order), so one
        that raises spoils only itself; yields ``(plugin name, its result or None)``."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        for impl in impls:
            others = [other.plugin for other in impls if other is not impl]
            only_this = self.pm.subset_hook_caller(hook_name, remove_plugins=others)
            name = self.pm.get_name(impl.plugin)
            self._trace(f"{hook_name}: plugin {name}")
            try:
                results = only_this(**kwargs)
            except Exception as exc:
                self.broken[name] = f"{hook_name} raised {type(exc).__name__}: {exc}"
                continue
            yield name, results[0] if results else None

    def registry(self):
        """What the registered plugins provide, collected once per set of plugins: registering or
        unregistering one (through this manager or pluggy's own ``pm``) collects it anew."""
        plugins = frozenset(map(id, self.pm.get_plugins()))
        if self._registry is None or self._registry_of != plugins:
            self._registry, self._registry_of = Registry.collect(self), plugins
        return self._registry


FORMAT_KIND = "checkpoint_format"  # how `explorer plugins` and providers name checkpoint formats
CONVERTER_KIND = "config_converter"  # ... and converters of Hugging Face configs
TRACKER_KIND = "tracker"  # ... and run trackers


class Registry:
    """Every registered component, analysis and checkpoint format, keyed by (kind, name) and by
    name."""

    def __init__(self):
        self.components = {}  # (kind, name) -> Component
        self.analyses = {}  # name -> Analysis
        self.formats = {}  # name -> CheckpointFormat, in registration order (detection order)
        self.converters = {}  # model_type -> ConfigConverter
        self.trackers = {}  # name -> Tracker
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
        for name, items in plugins._call_each("explorer_config_converters"):
            reg._add_all(plugins, name, items, ConfigConverter, reg._add_converter)
        for name, items in plugins._call_each("explorer_trackers"):
            reg._add_all(plugins, name, items, Tracker, reg._add_tracker)
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
        return self._add_named(fmt, provider, FORMAT_KIND, self.formats, "checkpoint format")

    def _add_converter(self, converter, provider):
        return self._add_named(converter, provider, CONVERTER_KIND, self.converters,
                               "config converter")

    def _add_tracker(self, tracker, provider):
        return self._add_named(tracker, provider, TRACKER_KIND, self.trackers, "tracker")

    def _add_named(self, item, provider, kind, table, what):
        """Register a checkpoint format or config converter under its name, once."""
        problem = item.problem()
        if problem:
            return problem
        key = (kind, item.name)
        if item.name in table:
            return (f"{what} {item.name!r} is already registered by "
                    f"{self.provider[key].plugin}; this one was skipped")
        table[item.name] = item
        self.provider[key] = provider

    def names(self, kind):
        return sorted(name for k, name in self.components if k == kind)

    def component(self, kind, name):
        """The component ``kind``/``name``; an :class:`explorer.errors.UnknownNameError` lists
        the registered names and the closest one."""
        try:
            return self.components[(kind, name)]
        except KeyError:
            what = kind if kind not in COMPONENT_KINDS else f"{kind} component"
            raise UnknownNameError(what, name, self.names(kind)) from None

    def analysis(self, name):
        """The analysis ``name``; an :class:`explorer.errors.UnknownNameError` if none is."""
        try:
            return self.analyses[name]
        except KeyError:
            raise UnknownNameError("analysis", name, sorted(self.analyses)) from None

    def tracker(self, name, where=""):
        """The tracker ``name``; an :class:`explorer.errors.UnknownNameError` if none is."""
        try:
            return self.trackers[name]
        except KeyError:
            raise UnknownNameError("tracker", name, sorted(self.trackers), where=where) from None


def _short(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _import_module(module_name):
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(f"failed to import {module_name}: {type(exc).__name__}: {exc}") from None


def _import_file(path, name):
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
        raise PluginError(f"failed to import {path}: {type(exc).__name__}: {exc}") from None
    return module


def get_plugin_manager(entry_points=True, plugins=(), defaults=True):
    """A fresh plugin manager: the built-ins, then entry points, then ``plugins`` (names/paths).

    ``EXPLORER_DISABLE_PLUGINS=a,b`` blocks plugins by registered name (pluggy's
    ``set_blocked``); ``EXPLORER_TRACE_PLUGINS=1`` traces every hook call to stderr. A plugin in
    ``plugins`` that fails to import or register raises :class:`explorer.PluginError`.
    """
    manager = Plugins()
    for name in os.environ.get(DISABLE_ENV, "").split(","):
        if name.strip():
            manager.pm.set_blocked(name.strip())
    if os.environ.get(TRACE_ENV, "") not in ("", "0"):
        # Looked up at each write, so a redirected or captured stderr gets the trace.
        manager.pm.trace.root.setwriter(lambda text: sys.stderr.write(text))
        manager.pm.enable_tracing()
    if defaults:
        own = _own_distribution()
        for module_name in DEFAULT_PLUGINS:
            manager.load_builtin(module_name, distribution=own)
    if entry_points:
        manager.load_entry_points()
    for plugin in plugins:
        manager.load(plugin)
    return manager
