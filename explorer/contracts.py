"""The contracts between components that must cooperate: positional encodings and attention.

A positional encoding can act in three places. Each method defaults to doing nothing, so a
scheme overrides only where it acts: learned and sinusoidal positions in ``embed``, RoPE in
``rotate``, ALiBi in ``bias``. Attention components call ``rotate`` and ``bias`` for every head
layout (grouped-query included), so any positional scheme works with any attention.
"""

from torch import nn


class PositionalEncoding(nn.Module):

    def embed(self, x, positions):
        """Add absolute position information to token embeddings ``x`` (B, T, C)."""
        return x

    def rotate(self, q, k, positions):
        """Transform queries (B, nh, T, hs) and keys (B, nkv, T, hs) at absolute ``positions`` (T,)."""
        return q, k

    def bias(self, q_positions, k_positions):
        """An additive attention bias (nh, Tq, Tk) for these absolute positions, or None."""
        return None
