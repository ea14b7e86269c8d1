"""The contracts between components that must cooperate: positional encodings and attention.

A positional encoding can act in three places. Each method defaults to doing nothing, so a
scheme overrides only where it acts: learned and sinusoidal positions in ``embed``, RoPE in
``rotate``, ALiBi in ``bias``. The model owns one encoding (``model.pos_emb``) and hands it to
every block, so any positional scheme works with any attention.

What an attention component promises in return (``forward(x, pos, positions, cache=None)``):

1. Project ``x`` to queries (B, nh, T, hs) and keys/values (B, nkv, T, hs); ``nkv`` divides
   ``nh`` (grouped-query, multi-query) or equals it.
2. Normalise queries and keys, if it does (QK-norm), then call ``pos.rotate(q, k, positions)``
   with the keys still at ``nkv`` heads, before they are repeated to ``nh``.
3. Score ``q . k / sqrt(hs)`` and add ``pos.bias(q_positions, k_positions)`` (nh, Tq, Tk) to the
   scaled scores, the way ``scaled_dot_product_attention`` adds a float ``attn_mask``.
4. Mask with :func:`causal_mask`, computed from the absolute positions of queries and keys (not
   from ``[:T, :T]``), so a KV cache that passes ``positions = offset + arange(T)`` and keeps
   earlier keys works unchanged.
5. Given a ``cache`` (an :class:`explorer.kv_cache.KVCache`, during incremental decoding), call
   ``keys, values, k_positions = cache.update(keys, values, positions, window)`` after step 2,
   with keys and values still at ``nkv`` heads, and attend to what it returns: this call's keys
   after the earlier ones, (B, nkv, Tk, hs), at absolute positions ``k_positions`` (Tk,) for
   steps 3 and 4. With a sliding window the cache keeps only the last ``window`` keys.

Positions are always absolute token indices, shape (T,), on the activations' device.

What an attention exposes for analyses (the KV cache): ``n_heads``, ``n_kv_heads``, ``head_dim``
and ``window`` (0 = none), and optionally ``kv_values_per_token``, the elements one token adds
to this layer's cache when it is not ``2 * n_kv_heads * head_dim`` (keys and values): latent
attention caches ``kv_lora_rank + qk_rope_head_dim``. Read it with :func:`kv_values_per_token`.

Optional methods any module may expose (mixture of experts does), which training and analyses
find by walking ``model.modules()``, so they need not know what the module is:

6. ``explorer_aux_loss()`` -> a scalar tensor or None: the auxiliary losses of the last forward,
   already multiplied by their coefficients, which training adds to the LM loss (an MoE's
   load-balancing and router z-losses). :func:`aux_loss` sums them over a model.
   ``explorer_stats()`` -> a dict of plain numbers (and lists of them) about the last forward,
   for logging (an MoE's per-expert load). :func:`stats` gathers them by module name.
7. ``active_parameters()`` -> int: the parameters one token uses in this module, where that is
   fewer than the module holds (an MoE: router + shared experts + top_k routed experts).
   :func:`active_parameter_count` gives a model's count per token.
"""

from torch import nn


class PositionalEncoding(nn.Module):
    """Base class: a positional encoding that does nothing (NoPE). Override what the scheme uses."""

    def embed(self, x, positions):
        """Add absolute position information to token embeddings ``x`` (B, T, C)."""
        return x

    def rotate(self, q, k, positions):
        """Transform queries (B, nh, T, hs) and keys (B, nkv, T, hs) at absolute ``positions`` (T,).

        Acts on the last dim only, per position, identically for every head, so it works for any
        ``nkv`` (grouped-query and multi-query attention call it before repeating the keys).
        """
        return q, k

    def bias(self, q_positions, k_positions):
        """An additive bias (nh, Tq, Tk) for the scaled scores, or None.

        Only the entries where ``k_positions <= q_positions`` matter: the others are masked.
        """
        return None


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


def aux_loss(model):
    """The sum of every module's ``explorer_aux_loss()`` after a forward, or None if none has one.

    Training adds it to the LM loss: ``loss = lm_loss + aux`` when ``aux`` is not None.
    """
    losses = [loss for m in model.modules() if hasattr(m, "explorer_aux_loss")
              for loss in [m.explorer_aux_loss()] if loss is not None]
    return sum(losses[1:], losses[0]) if losses else None


def stats(model):
    """``{module name: explorer_stats()}`` for every module that reports some."""
    return {name: found for name, m in model.named_modules() if hasattr(m, "explorer_stats")
            for found in [m.explorer_stats()] if found}


def active_parameter_count(model):
    """Parameters used per token: all of them (a tied tensor once), except that a module with
    ``active_parameters()`` counts that instead of everything it holds."""
    seen, total = set(), 0
    skip = set()  # modules inside one that already reported its active count

    for name, module in model.named_modules():
        if any(name.startswith(prefix) for prefix in skip):
            continue
        if hasattr(module, "active_parameters") and module is not model:
            total += module.active_parameters()
            seen.update(id(p) for p in module.parameters())
            skip.add(name + ".")
            continue
        for p in module.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total
