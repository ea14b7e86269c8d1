"""The contracts between explorer's core and its components: what each kind's factory returns.

Every kind is a :class:`typing.Protocol` below (structural: a component need not inherit from
it), except positional encodings, which subclass :class:`PositionalEncoding`, whose methods
default to doing nothing. The core calls a factory as ``factory(ctx, **params, **extra)``
(:class:`ComponentFactory`); each Protocol's docstring says what ``extra`` holds for its kind.

Positional encoding and attention must cooperate. A positional encoding can act in three
places, and overrides only where it acts: learned and sinusoidal positions in ``embed``, RoPE in
``rotate``, ALiBi in ``bias``. The model owns one encoding (``model.pos_emb``) and hands it to
every block, so any positional scheme works with any attention; a spec's ``layers:`` may give a
block another one (NoPE every 4th layer), which acts there only through ``rotate`` and ``bias``:
the token embeddings are the spec-wide encoding's alone. What an attention promises in
return (``forward(x, pos, positions, cache=None)``):

1. Project ``x`` to queries (B, nh, T, hs) and keys/values (B, nkv, T, hs); ``nkv`` divides
   ``nh`` (grouped-query, multi-query) or equals it.
2. Normalise queries and keys, if it does (QK-norm), then call ``pos.rotate(q, k, positions)``
   with the keys still at ``nkv`` heads, before they are repeated to ``nh``.
3. Score ``q . k / sqrt(hs)`` and add ``pos.bias(q_positions, k_positions)`` (nh, Tq, Tk) to the
   scaled scores, the way ``scaled_dot_product_attention`` adds a float ``attn_mask``.
4. Mask with :func:`causal_mask`, computed from the absolute positions of queries and keys (not
   from ``[:T, :T]``), so a KV cache that passes ``positions = offset + arange(T)`` and keeps
   earlier keys works unchanged.
5. Given a ``cache`` (an :class:`explorer.model.kv_cache.KVCache`, during incremental decoding), call
   ``keys, values, k_positions = cache.update(keys, values, positions, window)`` after step 2,
   with keys and values still at ``nkv`` heads, and attend to what it returns: this call's keys
   after the earlier ones, (B, nkv, Tk, hs), at absolute positions ``k_positions`` (Tk,) for
   steps 3 and 4. With a sliding window the cache keeps only the last ``window`` keys.

Positions are always absolute token indices, shape (T,), on the activations' device.

A recurrent token mixer (linear attention, a gated delta rule, Mamba) takes an attention's
place in a block under the same kind and ``forward`` signature; it keeps a state instead of
keys and values. It defines ``new_cache(max_len)`` returning an
:class:`explorer.model.kv_cache.RecurrentState` (``ModelCache.for_model`` asks each block's
mixer, and gives a :class:`KVCache` to those without it) and, given that state as ``cache``,
continues from ``state.tensors``, stores its new state there and calls ``state.advance(T)``:
run over a prompt in one call or token by token, it gives the same outputs. It ignores ``pos``
(its positions are the order of the tokens: in a hybrid the spec's RoPE acts in the softmax
layers only). For the analyses it exposes the attributes below with ``n_kv_heads``, ``window``
and ``kv_values_per_token`` 0, plus ``state_values_per_sequence``: the elements of state one
sequence carries whatever its length (a convolution's last inputs, the state matrices), read
with :func:`state_values_per_sequence`; and ``explorer_flops(batch, seq_len)``: the forward
FLOPs (2 per multiply-add) of its mixing for ``batch`` sequences of ``seq_len`` tokens, beyond
its weight matrices (which the FLOPs count as for any layer), in the form training runs.

What an attention exposes for analyses (the KV cache, FLOPs): ``n_heads``, ``n_kv_heads``,
``head_dim`` and ``window`` (0 = none); optionally ``v_head_dim``, the size of each head's values
when it is not ``head_dim`` (latent attention), and ``kv_values_per_token``, the elements one
token adds to this layer's cache when it is not ``2 * n_kv_heads * head_dim`` (keys and values):
latent attention caches ``kv_lora_rank + qk_rope_head_dim``. Read it with
:func:`kv_values_per_token`.

Optional methods any module may expose (mixture of experts does), which training and analyses
find by walking ``model.modules()``, so they need not know what the module is:

6. ``explorer_aux_loss()`` -> a scalar tensor or None: the auxiliary losses of the last forward,
   already multiplied by their coefficients, which training adds to the LM loss (an MoE's
   load-balancing and router z-losses). :func:`aux_loss` sums them over a model and names
   each module's part.
   ``explorer_stats()`` -> a dict of plain numbers (and lists of them) about the last forward,
   for logging (an MoE's per-expert load). :func:`stats` gathers them by module name.
7. ``active_parameters(matrices_only=False)`` -> int: the parameters one token uses in this
   module, where that is fewer than the module holds (an MoE: router + shared experts + top_k
   routed experts); with ``matrices_only`` only those with 2+ dims (the weight matrices, whose
   multiply-adds the FLOPs count). :func:`active_parameter_count` gives a model's count per
   token. A module whose method takes no ``matrices_only`` is asked without it (exact when all
   its parameters are matrices).
8. A mixture of experts exposes its routed experts as ``experts`` (an ``nn.ModuleList``, one
   module per expert, in the order of ``explorer_stats()["expert_load"]``), for per-expert
   figures (gradflow).
Importing this module does not import torch (hookspecs.py refers to it, and listing plugins or
validating a spec must stay fast): :class:`PositionalEncoding`, an ``nn.Module``, is defined on
first access.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only; the model (explorer.model.gpt) is a layer above
    import torch

    from explorer.model.kv_cache import KVCache


class ComponentFactory(Protocol):
    """``factory(ctx, **params, **extra)``: ``ctx`` an :class:`explorer.BuildContext`, ``params``
    every declared :class:`explorer.Param` (the spec's values merged over the defaults: declare
    no defaults in the signature, the Param is their one source), ``extra`` the kind's arguments.
    Returns what the kind's Protocol below describes."""

    def __call__(self, ctx: Any, /, **params_and_extra: Any) -> Any: ...


@runtime_checkable
class Norm(Protocol):
    """``norm`` (extra: ``dim``): an ``nn.Module`` mapping ``(..., dim)`` to the same shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Activation(Protocol):
    """``activation``: an ``nn.Module`` applied elementwise (any shape to the same shape)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class FeedForward(Protocol):
    """``ffn``: an ``nn.Module`` mapping ``(B, T, emb_dim)`` to ``(B, T, emb_dim)``; it builds
    its activation with ``ctx.make("activation")``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Attention(Protocol):
    """``attention``: causal self-attention, an ``nn.Module`` keeping points 1-5 above.

    ``x`` (B, T, emb_dim) -> (B, T, emb_dim); ``pos`` is the model's :class:`PositionalEncoding`,
    ``positions`` the absolute positions (T,) of ``x``'s tokens, ``cache`` the layer's KV cache
    while decoding (else None). A QK-norm is built with ``ctx.make("norm", dim=head_dim)``. The
    attributes describe its shape to analyses (the KV cache, memory): query heads, key/value
    heads, the size of one head, and the sliding window (0: none).
    """

    n_heads: int
    n_kv_heads: int
    head_dim: int
    window: int

    def forward(self, x: torch.Tensor, pos: PositionalEncoding, positions: torch.Tensor,
                cache: KVCache | None = None) -> torch.Tensor: ...


@runtime_checkable
class Block(Protocol):
    """``residual``: one transformer block, an ``nn.Module`` that wires its sublayers to the
    shortcut.

    It builds its attention and feed-forward with ``ctx.make("attention")`` and
    ``ctx.make("ffn")`` (the core tags each with ``explorer_kind``, which is how analyses find
    them, whatever the attribute names), then its norms with ``ctx.make("norm", dim=emb_dim)``,
    in that order so a seed gives the same weights whatever the style. ``forward(x, pos,
    positions, cache=None)``: ``x`` (B, T, emb_dim) -> (B, T, emb_dim); ``pos`` and
    ``positions`` are passed on to the attention unchanged, and so is ``cache``
    (``attention(h, pos, positions, cache=cache)``). The block applies residual dropout itself,
    ``nn.Dropout(ctx.config.dropout.residual)`` on each sublayer's output before it joins the
    shortcut.
    """

    def forward(self, x: torch.Tensor, pos: PositionalEncoding, positions: torch.Tensor,
                cache: KVCache | None = None) -> torch.Tensor: ...


@runtime_checkable
class WeightTying(Protocol):
    """``weight_tying``: a callable applied once to the assembled model, e.g. making the output
    head share the token embedding (``model.out_head.weight = model.tok_emb.weight``); ``model``
    is the :class:`explorer.GPTModel`."""

    def __call__(self, model: torch.nn.Module) -> None: ...


@runtime_checkable
class Tokenizer(Protocol):
    """What a ``tokenizer`` factory returns; the factory is called with no arguments. ``n_vocab``
    is the number of token ids it produces (declare it on the Component too, as ``n_vocab``, so
    that a spec with a smaller ``vocab_size`` is refused without loading the tokenizer)."""

    n_vocab: int

    def encode(self, text: str, allowed_special: Any = ()) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


def causal_mask(q_positions, k_positions, window=0):
    """The positions a query may NOT see: True where masked, shape (Tq, Tk).

    A query at position ``p`` sees keys at positions ``p - window < p' <= p`` (the last
    ``window`` tokens, itself included), or every ``p' <= p`` when ``window`` is 0.
    """
    distance = q_positions[:, None] - k_positions[None, :]  # (Tq, Tk): how far back each key is
    mask = distance < 0
    if window:
        mask = mask | (distance >= window)
    return mask


def kv_values_per_token(attention):
    """Elements one token adds to one attention layer's KV cache (keys and values together)."""
    given = getattr(attention, "kv_values_per_token", None)
    return given if given is not None else 2 * attention.n_kv_heads * attention.head_dim


def state_values_per_sequence(mixer):
    """Elements of recurrent state one sequence keeps in this token mixer (0: a softmax
    attention, whose cache grows by :func:`kv_values_per_token` per token instead)."""
    return getattr(mixer, "state_values_per_sequence", None) or 0


MIXER_FLOPS_METHOD = "explorer_flops"


AUX_LOSS_METHOD = "explorer_aux_loss"


def aux_loss(model):
    """``(total, parts)`` after a forward: the sum of every module's ``explorer_aux_loss()``
    (None when none has one) and ``[(module name, its loss), ...]``, so that a total that is
    not finite can name the module whose loss went bad.

    Training adds the total to the LM loss: ``loss = lm_loss + total`` when it is not None.
    """
    total, parts = None, []
    for name, module in model.named_modules():
        method = getattr(module, AUX_LOSS_METHOD, None)
        value = method() if callable(method) else None
        if value is not None:
            parts.append((name, value))
            total = value if total is None else total + value
    return total, parts


def stats(model):
    """``{module name: explorer_stats()}`` for every module that reports some."""
    return {name: found for name, m in model.named_modules() if hasattr(m, "explorer_stats")
            for found in [m.explorer_stats()] if found}


def active_parameter_count(model, matrices_only=False):
    """Parameters used per token: all of them (a tied tensor once), except that a module with
    ``active_parameters()`` counts that instead of everything it holds. ``matrices_only``: only
    parameters with 2+ dims (point 7)."""
    seen, total = set(), 0
    skip = set()  # modules inside one that already reported its active count

    for name, module in model.named_modules():
        if any(name.startswith(prefix) for prefix in skip):
            continue
        if hasattr(module, "active_parameters") and module is not model:
            total += _active(module, matrices_only)
            seen.update(id(p) for p in module.parameters())
            skip.add(name + ".")
            continue
        for p in module.parameters(recurse=False):
            if id(p) not in seen and (p.dim() >= 2 or not matrices_only):
                seen.add(id(p))
                total += p.numel()
    return total


def active_count_of_block(block, matrices_only=False):
    """What :func:`active_parameter_count` of a model counts inside ``block``, one of its
    modules: the block's own ``active_parameters()`` if it has one, else its modules'."""
    if hasattr(block, "active_parameters"):
        return _active(block, matrices_only)
    return active_parameter_count(block, matrices_only)


def _active(module, matrices_only):
    if not matrices_only:
        return module.active_parameters()
    try:
        takes_flag = "matrices_only" in inspect.signature(module.active_parameters).parameters
    except (TypeError, ValueError):
        takes_flag = False
    if takes_flag:
        return module.active_parameters(matrices_only=True)
    return module.active_parameters()


def _define_positional_encoding():
    from torch import nn

    class PositionalEncoding(nn.Module):
        """``positional``: the model's one positional encoding; this base does nothing (NoPE).

        Subclass it and override what the scheme uses; ``positions`` are absolute (T,).
        """

        def embed(self, x, positions):
            """Add absolute position information to token embeddings ``x`` (B, T, C)."""
            return x

        def rotate(self, q, k, positions):
            """Transform queries (B, nh, T, hs) and keys (B, nkv, T, hs) at ``positions`` (T,).

            Acts on the last dim only, per position, identically for every head, so it works
            for any ``nkv`` (grouped-query and multi-query attention call it before repeating
            the keys).
            """
            return q, k

        def bias(self, q_positions, k_positions):
            """An additive bias (nh, Tq, Tk) for the scaled scores, or None.

            Only the entries where ``k_positions <= q_positions`` matter: the others are masked.
            """
            return None

    PositionalEncoding.__module__ = __name__
    PositionalEncoding.__qualname__ = "PositionalEncoding"  # pickle finds it by this name
    return PositionalEncoding


def __getattr__(name):
    if name == "PositionalEncoding":
        globals()[name] = cls = _define_positional_encoding()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
