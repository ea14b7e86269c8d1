"""Norms over the last dim: the book's LayerNorm, RMSNorm, and none (imported only when building)."""

import torch
from torch import nn
from torch.nn import functional as F

from ..impl import uses_kernel


class LayerNorm(nn.Module):
    """The book's LayerNorm (section 4.2): normalise over the last dim, then scale and shift.

    ``impl`` picks how: ``auto`` and ``fused`` always call ``F.layer_norm`` (one kernel, equal
    to ~1e-6); ``book`` writes the book's ops out in training (its numbers bit for bit) and
    calls the kernel in eval; ``manual`` always writes them out.
    """

    def __init__(self, ctx, dim, eps, impl):
        super().__init__()
        self.eps = eps
        self.impl = impl
        self.scale = nn.Parameter(torch.ones(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        if uses_kernel(self.impl, self.training):
            return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)  # biased, as GPT-2 and the book
        norm_x = (x - mean) / torch.sqrt(var + self.eps)
        return self.scale * norm_x + self.shift


class RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich 2019), as in Llama: x / sqrt(mean(x^2) + eps) * weight.

    No mean subtraction and no shift, so ``dim`` parameters (``weight``, initialised to ones)
    instead of LayerNorm's 2 * dim. Like Llama, it normalises in float32 at least and casts back
    to the input's dtype before the scale. Equals ``torch.nn.RMSNorm(dim, eps)``.

    ``unit_offset`` is Gemma's parametrisation: the scale is ``1 + weight`` with ``weight``
    initialised to zeros (so weight decay pulls the scale towards 1, not 0), and, as Gemma does,
    the scale is applied in float32 before the cast back.
    """

    def __init__(self, ctx, dim, eps, unit_offset):
        super().__init__()
        self.eps = eps
        self.unit_offset = unit_offset
        self.weight = nn.Parameter(torch.zeros(dim) if unit_offset else torch.ones(dim))

    def forward(self, x):
        h = x.to(torch.promote_types(x.dtype, torch.float32))  # bf16/fp16 -> fp32, fp64 stays
        norm_x = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        if self.unit_offset:
            return (norm_x * (1.0 + self.weight.to(h.dtype))).to(x.dtype)
        return self.weight * norm_x.to(x.dtype)


class NoNorm(nn.Module):
    """No normalisation: returns its input, and holds no parameters (for ablations)."""

    def __init__(self, ctx, dim):
        super().__init__()

    def forward(self, x):
        return x
