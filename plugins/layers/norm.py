"""Norms over the last dim: the book's LayerNorm, RMSNorm, and none (imported only when building)."""

import torch
from torch import nn
from torch.nn import functional as F


class LayerNorm(nn.Module):
    """The book's LayerNorm (section 4.2): normalise over the last dim, then scale and shift."""

    def __init__(self, ctx, dim, eps, impl):
        super().__init__()
        self.eps = eps
        self.impl = impl
        self.scale = nn.Parameter(torch.ones(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        if self.impl == "fused" or (self.impl == "auto" and not self.training):
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
    """

    def __init__(self, ctx, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        h = x.to(torch.promote_types(x.dtype, torch.float32))  # bf16/fp16 -> fp32, fp64 stays
        norm_x = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * norm_x.to(x.dtype)


class NoNorm(nn.Module):
    """No normalisation: returns its input, and holds no parameters (for ablations)."""

    def __init__(self, ctx, dim):
        super().__init__()

    def forward(self, x):
        return x
