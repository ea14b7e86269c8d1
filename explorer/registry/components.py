"""What plugins hand to the core: descriptors of components and analyses, and their parameters.

These are plain data and import nothing heavy: listing plugins and validating a spec never
imports torch. A factory may be given as ``"module:attribute"`` and is imported on first use.
"""

import importlib
from dataclasses import dataclass, field
from typing import Callable

from explorer.registry.params import Param  # noqa: F401 - the parameters' type, public here

# The component kinds a spec's ``components:`` section names, in the order the report lists them.
COMPONENT_KINDS = (
    "norm", "activation", "ffn", "attention", "positional", "residual", "weight_tying",
)
# Registered like components, chosen by the spec's top-level ``tokenizer:`` key.
TOKENIZER_KIND = "tokenizer"
# Registered like components, chosen by the train settings' ``task:`` (explorer.training.tasks).
TASK_KIND = "task"
REGISTERED_KINDS = (*COMPONENT_KINDS, TOKENIZER_KIND, TASK_KIND)


def resolve(target):
    """A callable as it is, or a ``"module:attribute"`` string (``attribute`` may be dotted)
    imported now: explorer's one loader of lazy references (components' factories, analyses'
    callables, the sweep's executors), so importing nothing heavy until one is used."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Component:
    """A model component a plugin contributes (see ``hookspecs.explorer_components``)."""

    kind: str
    name: str
    factory: Callable | str
    params: tuple[Param, ...] = ()
    description: str = ""
    # Cross-field rules, run when a spec is validated: ``check(config, params)`` (the validated
    # ModelConfig, the merged parameter values) raises ParamError; ``check(config, params,
    # choices)`` also gets every kind's ComponentChoice for the same layer (rules across kinds).
    # A callable or "module:attr"; it must not import torch (spec validation never does).
    check: Callable | str | None = None
    # Tokenizers only: how many token ids it produces, declared so that a spec whose vocab_size
    # is smaller is refused without loading the tokenizer. None: not declared.
    n_vocab: int | None = None
    # True when it acts on the model as a whole, not inside a block (a positional encoding added
    # to the token embeddings): a spec may choose it spec-wide only, not under ``layers:``.
    model_wide: bool = False

    def load(self):
        return resolve(self.factory)

    def load_check(self):
        return resolve(self.check) if self.check else None

    def param(self, name):
        return next((p for p in self.params if p.name == name), None)

    def defaults(self):
        return {p.name: p.default for p in self.params}


@dataclass(frozen=True)
class Chart:
    """A chart an analysis draws of several specs' results, side by side.

    ``draw(fig, series)`` draws on ``fig``, a ``matplotlib.figure.Figure`` the core created (use
    its object API: ``fig.subplots()``, never pyplot), for ``series = [(label, result), ...]``,
    one per spec that has a result, in the order compare lists the specs. The core adds ``title``
    above it and saves it: ``explorer compare --plots DIR`` writes ``DIR/<name>.png``; a report
    can ask for SVG. ``draw`` may be a ``"module:attribute"`` string, imported on first use, so
    registering a plugin never imports matplotlib.
    """

    name: str  # the file name without its suffix: gradflow -> gradflow.png
    title: str
    draw: Callable | str
    size: tuple[float, float] = (7.0, 4.0)  # inches, before draw changes it

    def load(self):
        return resolve(self.draw)


def flat_figures(result, depth=2):
    """The figures of an analysis that declares none: its scalars (numbers, strings, booleans),
    nested dicts flattened to ``depth`` levels with dotted keys; lists are skipped."""
    out = {}
    for key, value in result.items():
        if isinstance(value, dict):
            if depth > 1:
                out.update({f"{key}.{k}": v for k, v in flat_figures(value, depth - 1).items()})
        elif value is None or isinstance(value, (int, float, str)):  # bool is an int
            out[str(key)] = value
    return out


@dataclass(frozen=True)
class Analysis:
    """An analysis a plugin contributes (see ``hookspecs.explorer_analyses``)."""

    name: str
    run: Callable | str
    description: str = ""
    params: tuple[Param, ...] = ()
    default: bool = True  # part of the set ``explorer build`` runs without --only
    render: Callable | str | None = None
    # False for analyses that read only shapes (ctx.shape_model(), ctx.compact_model()): they run
    # on the meta device, so they still run when the weights would not fit in memory.
    needs_weights: bool = True
    # figures(result) -> {name: int | float | str | bool}: the flat headline figures compare
    # puts side by side, with exact values (rounding is for display). None: flat_figures.
    figures: Callable | str | None = None
    charts: tuple[Chart, ...] = ()  # what compare --plots draws of this analysis
    # html(result) -> markupsafe.Markup | str: the body of this analysis's section in an HTML
    # page (``--html``), replacing the default (a table of ``figures`` and the ``render`` text).
    # Markup is inserted as HTML; a plain str is text, shown escaped in a <pre>. None: default.
    html: Callable | str | None = None
    # Cross-field rules on the options, as Component.check: ``check(config, options)``.
    check: Callable | str | None = None

    def load(self):
        return resolve(self.run)

    def load_check(self):
        return resolve(self.check) if self.check else None

    def load_render(self):
        return resolve(self.render) if self.render else None

    def load_html(self):
        return resolve(self.html) if self.html else None

    def figures_of(self, result):
        """The headline figures of ``result``, keys without the analysis name."""
        return resolve(self.figures)(result) if self.figures else flat_figures(result)

    def param(self, name):
        return next((p for p in self.params if p.name == name), None)

    def defaults(self):
        return {p.name: p.default for p in self.params}


@dataclass(frozen=True)
class CheckpointFormat:
    """A checkpoint layout a plugin contributes (see ``hookspecs.explorer_checkpoint_formats``).

    Reading needs ``detect`` and ``to_model``; exporting needs ``target`` and ``from_model``.
    Each callable may be a ``"module:attribute"`` string, imported on first use.
    """

    name: str
    description: str = ""
    title: str = ""  # how messages name it ("Hugging Face GPT-2"); the name if empty
    detect: Callable | str | None = None  # detect(ckpt) -> bool
    to_model: Callable | str | None = None  # to_model(ckpt, model, spec) -> {name: (src, tensor)}
    check: Callable | str | None = None  # check(ckpt, spec) -> iterable of Mismatch
    unsupported: Callable | str | None = None  # unsupported(spec) -> None or (spec key, reason)
    target: str = ""  # the name ``explorer export --to`` gives it; "" if it cannot be written
    from_model: Callable | str | None = None  # from_model(model, spec) -> {name in file: tensor}
    config: Callable | str | None = None  # config(model, spec) -> dict, written as config.json

    @property
    def label(self):
        return self.title or self.name

    def load(self, part):
        """The callable of field ``part`` ("detect", "to_model", ...), or None if not given."""
        target = getattr(self, part)
        return resolve(target) if target is not None else None

    def problem(self):
        """Why this descriptor is unusable, or None: what reading and writing each need."""
        if not self.name or not isinstance(self.name, str):
            return f"checkpoint format {self.name!r} needs a non-empty name"
        if (self.detect is None) != (self.to_model is None):
            return (f"checkpoint format {self.name!r} gives only one of detect and to_model; "
                    "reading needs both")
        if bool(self.target) != (self.from_model is not None):
            return (f"checkpoint format {self.name!r} gives only one of target and from_model; "
                    "exporting needs both")
        if self.detect is None and not self.target:
            return f"checkpoint format {self.name!r} can neither read nor write (no detect, no target)"
        return None


@dataclass(frozen=True)
class ConfigConverter:
    """Turns a Hugging Face ``config.json`` of one ``model_type`` into a spec (see
    ``hookspecs.explorer_config_converters``).

    ``convert(cfg)`` reads the config through ``cfg`` (an :class:`explorer.spec.hf_config.HFConfig`:
    ``cfg.integer("hidden_size")``, ...) and writes spec keys with ``cfg.set("model.emb_dim",
    value, "hidden_size")``; it may be a ``"module:attribute"`` string, imported on first use.
    ``ignores`` names the fields of this model type that do not change what the model computes
    (beyond those every config has, :data:`explorer.spec.hf_config.IGNORED`), at any value;
    ``ignores_when`` the fields that change nothing at one value only (``{"use_mrope": False}``:
    a multimodal switch that is off), and are refused at any other. Any other field the
    converter does not read is refused, so nothing is silently dropped.
    """

    model_type: str  # config.json's model_type: llama, mistral, ...
    convert: Callable | str
    description: str = ""
    ignores: tuple[str, ...] = ()
    ignores_when: dict = field(default_factory=dict)  # field -> the value that changes nothing

    @property
    def name(self):
        return self.model_type

    def load(self):
        return resolve(self.convert)

    def problem(self):
        """Why this descriptor is unusable, or None."""
        if not self.model_type or not isinstance(self.model_type, str):
            return f"config converter {self.model_type!r} needs a non-empty model_type"
        if not isinstance(self.ignores, tuple) or not all(isinstance(f, str) for f in self.ignores):
            return (f"config converter {self.model_type!r}: ignores must be a tuple of field "
                    "names")
        if not isinstance(self.ignores_when, dict) or not all(
                isinstance(f, str) for f in self.ignores_when):
            return (f"config converter {self.model_type!r}: ignores_when must map field names "
                    "to the value at which each changes nothing")
        return None


@dataclass
class Provider:
    """Where a registered component or analysis came from, for reports and error messages."""

    plugin: str  # the name it was registered under
    distribution: str = ""  # "name version" of the installed distribution, if any

    def __str__(self):
        return f"{self.plugin} ({self.distribution})" if self.distribution else self.plugin
