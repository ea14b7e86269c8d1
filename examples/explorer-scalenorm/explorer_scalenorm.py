"""ScaleNorm (Nguyen & Salazar, 2019, "Transformers without Tears") as an explorer norm.

    y = g * x / max(||x||, eps)

over the last dimension, with one learnable scalar ``g`` initialised to sqrt(dim): a norm with
a single parameter instead of LayerNorm's 2 * dim. A spec selects it with

    components:
      norm: {name: scalenorm, eps: 1.0e-5}

This one file is the whole plugin: the hook below tells explorer what it offers, the class is
what the spec gets.
"""

import math

import torch
from torch import nn

from explorer import Component, Param, hookimpl


class ScaleNorm(nn.Module):
    """Scale every vector to length ``g``; ``g`` starts at sqrt(dim), the length of a unit-RMS vector.

    A norm factory is called as ``ScaleNorm(ctx, dim=..., **params)``: ``ctx`` is explorer's
    BuildContext (``ctx.config`` the model config), ``dim`` the width to normalise, and then
    every parameter declared in the hook below, already checked against its type and range (the
    Param holds the default, so the signature has none).
    """

    def __init__(self, ctx, dim, eps):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.tensor(math.sqrt(dim)))

    def forward(self, x):
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp(min=self.eps)  # (..., 1)
        return self.g * x / norm


@hookimpl
def explorer_components():
    return [
        Component(
            kind="norm", name="scalenorm", factory=ScaleNorm,
            params=(Param("eps", float, 1e-5, "the smallest norm divided by (guards x = 0)",
                          min=0, exclusive_min=True),),
            description="ScaleNorm: g * x / ||x||, one learnable scalar g = sqrt(dim) at init.",
        ),
    ]
