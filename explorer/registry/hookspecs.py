"""Every hook an explorer plugin can implement.

A plugin is a module (or any object) with functions marked ``@explorer.hookimpl`` whose names
match the functions below. Built-in plugins (``explorer.plugins.*``) and third-party plugins
(entry-point group ``explorer``, ``-p/--plugin`` on the command line, ``plugins:`` in a spec) are
registered by the same call, so a built-in has no powers a third-party plugin lacks.

A hook implementation may accept fewer arguments than its spec lists (pluggy's opt-in
arguments); none of the hooks below take arguments yet, so they can grow without breaking plugins.
The core calls each plugin's implementation through pluggy, one plugin at a time, so a plugin
that raises is reported and skipped without spoiling the others (``EXPLORER_TRACE_PLUGINS=1``
traces the calls to stderr).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from explorer.registry.components import Analysis, Component, ConfigConverter
    from explorer.registry.trackers import Tracker

hookspec = pluggy.HookspecMarker("explorer")


@hookspec
def explorer_components() -> list[Component]:
    """Contribute model components.

    Return a list of :class:`explorer.Component`. Each names its ``kind`` (one of
    ``explorer.COMPONENT_KINDS``: norm, activation, ffn, attention, positional, residual,
    weight_tying; or ``tokenizer``, chosen by the spec's top-level ``tokenizer:`` key; or
    ``task``, chosen by the train settings' ``task:``, whose factory is called as
    ``factory(**params)`` and returns an :class:`explorer.training.tasks.Task`), its
    ``name`` (what a spec writes, e.g. ``norm: rmsnorm``), its ``factory``, its ``params``
    (:class:`explorer.Param`, each with a type, a default and optionally a range or choices), an
    optional ``check(config, params)`` for rules across parameters (raising
    :class:`explorer.ParamError`; a check that takes a third argument, ``check(config, params,
    choices)``, also gets the :class:`explorer.ComponentChoice` of every kind for the same layer,
    for rules across kinds), and a one-line ``description``. A tokenizer also declares
    ``n_vocab``; a component that acts on the model as a whole (a positional encoding added to
    the token embeddings) sets ``model_wide=True``, so specs cannot choose it per layer.

    The factory is a callable, or a ``"module:attribute"`` string imported on first use (so
    listing and validating specs never imports torch). The core calls it as
    ``factory(ctx, **params, **extra)``, :class:`explorer.model.contracts.ComponentFactory`: ``ctx`` is
    an :class:`explorer.BuildContext` (``ctx.config`` is the validated
    :class:`explorer.ModelConfig`, ``ctx.make(kind, **extra)`` builds the spec's choice for
    another kind, ``ctx.layer`` is the block index or None; inside a block both are that
    layer's, with the spec's ``layers:`` entries applied, and ``ctx.choice(kind)`` is the
    :class:`explorer.ComponentChoice` it builds), ``params`` every declared parameter
    with the spec's values merged over the defaults (already validated: ranges, choices and
    ``check``), and ``extra`` the kind's arguments. Blocks of equal choices are taken to be
    copies: shape-only analyses build one and count it for each (explorer.model.stack); a factory
    that reads ``ctx.layer``, or blocks that share a parameter, make them build every block.
    What each kind must return and expose is a Protocol in :mod:`explorer.model.contracts`: ``Norm``,
    ``Activation``, ``FeedForward``, ``Attention``, ``PositionalEncoding`` (a base class),
    ``Block`` (kind ``residual``), ``WeightTying`` and ``Tokenizer``. An attention whose cache
    holds something other than keys and values of ``n_kv_heads`` heads (latent attention) also
    exposes ``kv_values_per_token``;
    any module may expose ``explorer_aux_loss()``, ``explorer_stats()`` and
    ``active_parameters()`` (a mixture of experts does): see explorer.model.contracts, points 6-7.

    A name registered twice for one kind is an error that names both plugins.
    """


@hookspec
def explorer_analyses() -> list[Analysis]:
    """Contribute analyses.

    Return a list of :class:`explorer.Analysis`. Each has a ``name`` (what ``--only`` selects),
    a ``run`` callable (or ``"module:attribute"`` string) called as ``run(ctx, **options)`` with
    an :class:`explorer.AnalysisContext` and every declared option, a one-line ``description``,
    its ``params`` (options with defaults, types and ranges, settable in a spec's ``analyses:``
    or with ``--set analyses.NAME.KEY=VALUE``; the Param is the one source of each default, so
    ``run`` declares none), an optional ``check(config, options)`` (raising
    :class:`explorer.ParamError`) run when the spec is validated, whether it is in the
    ``default`` set that ``explorer build`` runs, and an optional ``render(result) -> str`` for
    the text report.

    It owns its presentation in comparisons too: ``figures(result) -> dict`` gives the flat
    headline figures ``explorer compare`` puts side by side (``{name: int | float | str |
    bool}``, exact values; compare prefixes the analysis name and rounds only for display;
    without it, the result's scalars and one nested level of dicts), and ``charts`` is a tuple
    of :class:`explorer.Chart` whose ``draw(fig, series)`` draws on a matplotlib Figure for
    ``series = [(spec label, result), ...]`` (``compare --plots`` saves it as ``<name>.png``).

    And in HTML pages (``--html FILE`` on build and compare, :mod:`explorer.html`): each
    analysis has a section, headed by its name, description and plugin. Its body is, by
    default, a table of ``figures(result)`` and the ``render(result)`` text in a ``<pre>``
    (the result's YAML without ``render``); an optional ``html(result)`` replaces that body. It
    returns a ``markupsafe.Markup`` (inserted as HTML: escape what came from input, e.g. with
    ``Markup("<b>{}</b>").format(text)``, which escapes ``text``) or a plain ``str`` (shown as
    text, escaped). The ``charts`` are drawn below either body as inline SVG, with every spec of
    a comparison in one chart; a page never loads anything from the network.

    ``run`` returns a JSON-serialisable dict of plain numbers, strings, lists and dicts; integers
    stay exact (the JSON report carries them unrounded). It reaches the model through
    ``ctx.model()`` (built once per report, seeded with the spec's seed), the model an earlier
    analysis of the report trained through ``ctx.trained_model()`` (the ``train`` analysis's, or
    None) and the tokenizer through ``ctx.tokenizer()``; docs/plugins.md ("Writing an analysis")
    lists everything ``ctx`` offers. An analysis that does not apply to the spec raises
    :class:`explorer.NotApplicable` with the reason: it is left out of the report (the JSON
    report lists it under ``skipped``), neither a result nor a failure.
    """


@hookspec
def explorer_checkpoint_formats():
    """Contribute checkpoint formats: other programs' weight layouts, to read and to export.

    Return a list of :class:`explorer.CheckpointFormat`. Each has a ``name`` (what ``explorer
    plugins`` lists), a one-line ``description``, a ``title`` for messages ("Hugging Face
    GPT-2"), and callables (or ``"module:attribute"`` strings, imported on first use):

    - ``detect(ckpt) -> bool``: whether a checkpoint is in this format. ``ckpt`` is an
      :class:`explorer.weights.CheckpointFile`: ``ckpt.names`` (tensor names), ``ckpt.tensors``,
      ``ckpt.metadata`` (safetensors header metadata), ``ckpt.config`` (the ``config.json``
      beside the weights, or None) and ``ckpt.path``. The first registered format that says
      yes reads the file; explorer's own checkpoints (the spec in their metadata) are read by
      the core before any format is asked.
    - ``to_model(ckpt, model, spec) -> {model name: (name in the file, tensor)}``: the tensors
      under the model's ``state_dict`` names. ``model`` is the built model, so a mapping can
      read shapes from it (to split fused projections, say). Buffers the model rebuilds from
      the spec (causal masks, rotary tables) may be left out. Raise
      :class:`explorer.ExplorerError` for a file that cannot be in this format.
    - ``check(ckpt, spec) -> iterable of explorer.weights.Mismatch`` (optional): what tensor
      shapes cannot show (head count, norm eps, activation in ``config.json``); the core
      reports the first.
    - ``unsupported(spec) -> None or (spec key, reason)`` (optional): the first spec key this
      layout cannot express, e.g. ``("components.positional", "is rope; GPT-2 has only
      learned")``. Checked before loading and before exporting.
    - ``target`` and ``from_model(model, spec) -> {name in the file: tensor}``: make the format
      an ``explorer export --to TARGET`` choice; ``config(model, spec) -> dict`` (optional) is
      written beside the weights as ``config.json``. ``--to TARGET`` uses the first registered
      format for that target whose ``unsupported`` finds nothing.

    Tensor shapes and presence are compared with the model by the core, which also finds the
    spec key to change for a tensor that does not fit. A name registered twice is an error that
    names both plugins.
    """


@hookspec
def explorer_config_converters() -> list[ConfigConverter]:
    """Contribute converters from Hugging Face ``config.json`` files to specs, one per
    ``model_type``.

    Return a list of :class:`explorer.ConfigConverter`: ``model_type`` (what the config's
    ``model_type`` names), ``convert(cfg)`` (a callable or ``"module:attribute"`` string), a
    one-line ``description`` and ``ignores``, the fields of this type that do not change what
    the model computes. ``cfg`` is an :class:`explorer.spec.hf_config.HFConfig`: ``convert`` reads
    fields with ``cfg.integer(field, default)``, ``cfg.number``, ``cfg.flag``, ``cfg.text``,
    ``cfg.mapping``, ``cfg.get`` (each read is recorded), writes dotted spec keys with
    ``cfg.set(key, value, *fields)`` (the fields it came from, for messages), and refuses a
    value the spec cannot express with ``cfg.refuse(field, problem, valid)``: one line naming
    the file and the field.
    A field of the config that the converter neither reads nor ignores is refused by the core.
    ``explorer spec-from-hf`` and ``explorer build CONFIG`` use them; a checkpoint format can use
    them to check a ``config.json`` against a spec. A model_type registered twice is an error
    that names both plugins.
    """


@hookspec
def explorer_trackers() -> list[Tracker]:
    """Contribute run trackers: where a sweep's runs (and ``explorer build --track``'s training
    run) are recorded besides explorer's own store, for MLflow's or TensorBoard's views.

    Return a list of :class:`explorer.Tracker`: a ``name`` (what ``--track NAME`` and a sweep
    file's ``track:`` choose), a one-line ``description``, its ``params`` (options with
    defaults and types, set as ``track: {NAME: {KEY: VALUE}}``), ``requires`` (the modules it
    imports, looked for before a sweep starts) with ``install`` (how to get them, for the
    one-line error when one is missing), and ``open(ctx, **options)`` (a callable or
    ``"module:attribute"``) returning a session: ``start_run(name, group, config, tags)`` ->
    a run with ``log_curve(curve)``, ``log_metrics(metrics, step)`` and ``finish(status,
    failure)``; an optional ``close()``. :mod:`explorer.registry.trackers` has the Protocols;
    ``ctx.folder`` is where local files go by default (beside the sweep's store),
    ``ctx.experiment`` the sweep's name.

    The sweep driver calls it, in the driver's process, for each run right after the store
    holds the run's outcome; a tracker that raises is reported in one line (the run is in the
    store) and the sweep goes on. A name registered twice is an error that names both plugins.
    """
