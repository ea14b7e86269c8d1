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
