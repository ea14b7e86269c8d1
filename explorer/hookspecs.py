"""Every hook an explorer plugin can implement.

A plugin is a module (or any object) with functions marked ``@explorer.hookimpl`` whose names
match the functions below. Built-in plugins (``explorer.plugins.*``) and third-party plugins
(entry-point group ``explorer``, ``-p/--plugin`` on the command line, ``plugins:`` in a spec) are
registered by the same call, so a built-in has no powers a third-party plugin lacks.

A hook implementation may accept fewer arguments than its spec lists (pluggy's opt-in
arguments); none of the hooks below take arguments yet, so they can grow without breaking plugins.
"""

import pluggy

hookspec = pluggy.HookspecMarker("explorer")


@hookspec
def explorer_components():
    """Contribute model components.

    Return a list of :class:`explorer.Component`. Each names its ``kind`` (one of
    ``explorer.COMPONENT_KINDS``: norm, activation, ffn, attention, positional, residual,
    weight_tying), its ``name`` (what a spec writes, e.g. ``norm: rmsnorm``), its ``factory``, its
    ``params`` (:class:`explorer.Param`, each with a type and a default) and a one-line
    ``description``.

    The factory is a callable, or a ``"module:attribute"`` string imported on first use (so
    listing and validating specs never imports torch). The core calls it as
    ``factory(ctx, **params, **extra)`` where ``ctx`` is an :class:`explorer.BuildContext`
    (``ctx.config`` is the validated :class:`explorer.ModelConfig`, ``ctx.make(kind, **extra)``
    builds the spec's choice for another kind, ``ctx.layer`` is the block index or None),
    ``params`` are the spec's values merged over the declared defaults, and ``extra`` are the
    kind-specific arguments below. What each kind's factory returns:

    - ``norm`` (extra: ``dim``): an ``nn.Module`` mapping ``(..., dim)`` to the same shape.
    - ``activation``: an ``nn.Module`` applied elementwise.
    - ``ffn``: an ``nn.Module`` mapping ``(B, T, emb_dim)`` to ``(B, T, emb_dim)``; it gets its
      activation from ``ctx.make("activation")``.
    - ``positional``: an :class:`explorer.contracts.PositionalEncoding` (one per model, stored as
      ``model.pos_emb`` and passed to every block). It takes part in three places, each
      defaulting to "do nothing": ``embed(x, positions)`` adds absolute position information to
      the token embeddings ``(B, T, C)`` (learned, sinusoidal); ``rotate(q, k, positions)``
      transforms queries ``(B, nh, T, hs)`` and keys ``(B, nkv, T, hs)`` inside attention, acting
      on the last dim only so any number of key heads works (RoPE); ``bias(q_positions,
      k_positions)`` returns a bias ``(nh, Tq, Tk)`` added to the scaled scores ``q.k/sqrt(hs)``,
      or None (ALiBi; only entries with key position <= query position matter). ``positions``
      are absolute token positions ``(T,)``, so a KV cache passes ``offset + arange(T)``.
    - ``attention``: an ``nn.Module`` with ``forward(x, pos, positions, cache=None)``, ``x`` of
      shape ``(B, T, emb_dim)``, ``pos`` the model's PositionalEncoding and ``positions`` a
      ``(T,)`` tensor, returning ``(B, T, emb_dim)``. ``cache``, during incremental decoding, is
      the layer's :class:`explorer.kv_cache.KVCache`: after ``pos.rotate`` the attention calls
      ``keys, values, k_positions = cache.update(keys, values, positions, window)`` and attends
      to those (explorer.contracts, point 5). It normalises queries and keys first if it does
      (QK-norm, built with ``ctx.make("norm", dim=head_dim)``), then calls ``pos.rotate`` with the
      keys at their own head count (before grouped-query repetition), adds ``pos.bias`` to its
      scaled scores before the softmax, and masks with
      ``explorer.contracts.causal_mask(q_positions, k_positions, window)``, computed from
      positions rather than from ``[:T, :T]``. It exposes ``n_heads``, ``n_kv_heads``,
      ``head_dim`` and ``window`` (0 = no sliding window) for analyses such as the KV cache,
      and ``kv_values_per_token`` when its cache holds something else than keys and values of
      ``n_kv_heads`` heads (latent attention).

    Any module may also expose ``explorer_aux_loss()``, ``explorer_stats()`` and
    ``active_parameters()`` (a mixture of experts does): see explorer.contracts, points 6-7.
    - ``residual``: a transformer block, an ``nn.Module`` with ``forward(x, pos, positions,
      cache=None)``; it builds its own attention, feed-forward and norms with ``ctx.make`` (in the
      book's order: attention, feed-forward, norms), decides how they are wired to the shortcut,
      and passes ``cache`` on to its attention as ``att(h, pos, positions, cache=cache)``. The
      model passes ``cache`` only while decoding with a KV cache.
    - ``weight_tying``: a callable ``tie(model)`` applied once the model is assembled.
    - ``tokenizer`` (chosen by the spec's top-level ``tokenizer:`` key, not under ``components``):
      the factory is called with no arguments and returns an object with ``n_vocab``,
      ``encode(text, allowed_special=()) -> list[int]`` and ``decode(ids) -> str``.

    A name registered twice for one kind is an error that names both plugins.
    """


@hookspec
def explorer_analyses():
    """Contribute analyses.

    Return a list of :class:`explorer.Analysis`. Each has a ``name`` (what ``--only`` selects),
    a ``run`` callable (or ``"module:attribute"`` string) called as ``run(ctx, **options)`` with
    an :class:`explorer.AnalysisContext`, a one-line ``description``, its ``params`` (options with
    defaults, settable as ``--option name.key=value``), whether it is in the ``default`` set that
    ``explorer build`` runs, and an optional ``render(result) -> str`` for the text report.

    It owns its presentation in comparisons too: ``figures(result) -> dict`` gives the flat
    headline figures ``explorer compare`` puts side by side (``{name: int | float | str |
    bool}``, exact values; compare prefixes the analysis name and rounds only for display;
    without it, the result's scalars and one nested level of dicts), and ``charts`` is a tuple
    of :class:`explorer.Chart` whose ``draw(fig, series)`` draws on a matplotlib Figure for
    ``series = [(spec label, result), ...]`` (``compare --plots`` saves it as ``<name>.png``).

    ``run`` returns a JSON-serialisable dict of plain numbers, strings, lists and dicts; integers
    stay exact (the JSON report carries them unrounded). It reaches the model through
    ``ctx.model()`` (built once per report, seeded with the spec's seed) and the tokenizer through
    ``ctx.tokenizer()``.
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
