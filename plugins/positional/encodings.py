"""Positional encodings (see explorer.model.contracts.PositionalEncoding): embed, rotate or bias."""

import math

import torch
from torch import nn
from torch.nn import functional as F

from explorer.model.contracts import PositionalEncoding


class LearnedPositional(PositionalEncoding):
    """GPT-2's learned position embedding: one trainable vector per position.

    Holds ``weight`` (context_length, emb_dim) initialised like ``nn.Embedding``, so the model's
    key is the book's ``pos_emb.weight`` and the random stream is consumed identically.
    """

    def __init__(self, ctx):
        super().__init__()
        cfg = ctx.config
        self.weight = nn.Parameter(torch.empty(cfg.context_length, cfg.emb_dim))
        nn.init.normal_(self.weight)

    def embed(self, x, positions):
        return x + F.embedding(positions, self.weight)  # (B, T, C) + (T, C)

    def max_positions(self):
        return self.weight.shape[0]  # one learned row per position: nothing past the table


class NoPositional(PositionalEncoding):
    """No position information at all (NoPE): the causal mask alone tells tokens apart."""

    def __init__(self, ctx):
        super().__init__()


class SinusoidalPositional(PositionalEncoding):
    """The fixed sin/cos encoding of Vaswani et al. (2017), added to the tokens.

    PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(p / 10000^(2i/C)). No parameters: the
    frequencies are a non-persistent buffer, and the table is computed for the positions asked,
    so it has no length limit.
    """

    def __init__(self, ctx, base):
        super().__init__()
        self.dim = ctx.config.emb_dim
        inv_freq = base ** (-torch.arange(0, self.dim, 2, dtype=torch.float32) / self.dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (ceil(C/2),)

    def embed(self, x, positions):
        angles = positions[:, None].float() * self.inv_freq  # (T, ceil(C/2))
        pe = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # (T, 2*ceil(C/2))
        return x + pe[:, :self.dim].to(x.dtype)  # (B, T, C) + (T, C)


def _rotate_half(x):
    """(x1, x2) -> (-x2, x1) on the two halves of the last dim."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryPositional(PositionalEncoding):
    """Rotary position embedding (Su et al., 2021), the rotate-half form of GPT-NeoX/Llama/litgpt.

    Dimension j of a rotated vector of size hs is paired with j + hs/2 and the pair is rotated by
    the angle p * theta^(-2j/hs). Then q(p) . k(p') depends only on p - p', and norms are
    unchanged. hs is the last dim of what attention rotates: the head size emb_dim / n_heads
    (kept as a buffer), or another size, such as an attention's own ``head_dim`` or latent
    attention's rope part (computed on first use and cached per size and device). With
    ``fraction`` < 1 only the first int(hs * fraction) dims rotate, as a head of that size.
    """

    def __init__(self, ctx, theta, fraction, scaling, factor, original_context, low_freq_factor,
                 high_freq_factor, beta_fast, beta_slow, truncate, attention_factor):
        super().__init__()
        hs = ctx.config.head_dim
        self.theta = theta
        self.fraction = fraction  # < 1: only the first int(hs * fraction) dims rotate
        # Context extension (plugins/positional/rope_scaling.py); none leaves the frequencies alone.
        self.scaling = dict(scaling=scaling, factor=factor, original_context=original_context,
                            low_freq_factor=low_freq_factor, high_freq_factor=high_freq_factor,
                            beta_fast=beta_fast, beta_slow=beta_slow, truncate=truncate)
        self.attention_factor = attention_factor  # multiplies cos and sin (YaRN)
        self.head_size = hs  # the buffer's size; another (an attention's head_dim) is computed
        self.register_buffer("inv_freq", self._inverse_frequencies(hs), persistent=False)  # (hs/2,)
        self._other_sizes = {}  # (hs, device) -> (hs/2,)

    def _inverse_frequencies(self, hs, device=None):
        inv_freq = self.theta ** (-torch.arange(0, hs, 2, dtype=torch.float32, device=device) / hs)
        if self.scaling["scaling"] == "none":
            return inv_freq
        from .rope_scaling import scaled

        return scaled(inv_freq, hs, self.theta, **self.scaling)

    def frequencies(self, hs, device):
        """theta^(-2j/hs) for j < hs/2: the buffer for the head size, else cached per size."""
        if hs == self.head_size:
            return self.inv_freq
        if hs % 2:
            raise ValueError(f"rope rotates pairs of dimensions, but the rotated size is odd: {hs}")
        key = (hs, device)
        if key not in self._other_sizes:
            self._other_sizes[key] = self._inverse_frequencies(hs, device)
        return self._other_sizes[key]

    def rotate(self, q, k, positions):
        if self.fraction != 1.0:  # rotate the first dims as a head of their own, pass the rest
            rotated = int(q.shape[-1] * self.fraction)
            (q_rot, q_pass), (k_rot, k_pass) = (
                z.split([rotated, z.shape[-1] - rotated], dim=-1) for z in (q, k))
            q_rot, k_rot = self._rotate(q_rot, k_rot, positions)
            return torch.cat((q_rot, q_pass), dim=-1), torch.cat((k_rot, k_pass), dim=-1)
        return self._rotate(q, k, positions)

    def _rotate(self, q, k, positions):
        inv_freq = self.frequencies(q.shape[-1], positions.device)  # (hs/2,)
        angles = positions[:, None].float() * inv_freq  # (T, hs/2)
        angles = torch.cat((angles, angles), dim=-1)  # (T, hs)
        cos, sin = angles.cos(), angles.sin()
        if self.attention_factor != 1.0:
            cos, sin = cos * self.attention_factor, sin * self.attention_factor
        q = q * cos.to(q.dtype) + _rotate_half(q) * sin.to(q.dtype)  # (B, nh, T, hs)
        k = k * cos.to(k.dtype) + _rotate_half(k) * sin.to(k.dtype)  # (B, nkv, T, hs)
        return q, k


def alibi_slopes(n_heads):
    """The head slopes of Press et al. (2022): 2^(-8i/n) for i = 1..n when n is a power of two.

    Otherwise the paper's interpolation: the slopes for the closest power of two m < n, then
    every other slope of 2m for the remaining n - m heads.
    """
    def power_of_two(n):
        return [2 ** (-8 * i / n) for i in range(1, n + 1)]

    m = 2 ** math.floor(math.log2(n_heads))
    return power_of_two(m) + power_of_two(2 * m)[0::2][:n_heads - m]


class ALiBiPositional(PositionalEncoding):
    """Attention with linear biases (Press et al., 2022): no embedding, a per-head distance penalty.

    bias[h, i, j] = -slope[h] * (q_pos[i] - k_pos[j]) for keys at or before the query, 0 after
    it (where the causal mask takes over).
    """

    def __init__(self, ctx):
        super().__init__()
        slopes = torch.tensor(alibi_slopes(ctx.config.n_heads), dtype=torch.float32)
        self.register_buffer("slopes", slopes, persistent=False)  # (nh,)

    def bias(self, q_positions, k_positions):
        distance = (q_positions[:, None] - k_positions[None, :]).clamp(min=0)  # (Tq, Tk)
        return -self.slopes[:, None, None] * distance  # (nh, Tq, Tk)
