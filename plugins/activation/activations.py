"""Activations, applied elementwise (imported only when a model is built).

The book's GELUTanh can be written out as the book writes it (``impl: book`` or ``manual``), so
GPT-2 keeps its numbers bit for bit. The others call torch's fused built-ins (one kernel, and
autograd saves only the input), with the formula each computes in its docstring.
"""

import torch
from torch import nn
from torch.nn import functional as F

from ..impl import uses_kernel


class GELUTanh(nn.Module):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    ``impl``: ``auto`` and ``fused`` call ``F.gelu(approximate="tanh")`` (one kernel, equal to
    ~1e-6); ``book`` writes the formula out as the book does in training, the kernel in eval;
    ``manual`` always writes it out.
    """

    def __init__(self, ctx, impl):
        super().__init__()
        self.impl = impl

    def forward(self, x):
        if uses_kernel(self.impl, self.training):
            return F.gelu(x, approximate="tanh")
        return 0.5 * x * (1 + torch.tanh(
            torch.sqrt(torch.tensor(2.0 / torch.pi)) * (x + 0.044715 * torch.pow(x, 3))))


class GELU(nn.Module):
    """Exact GELU (Hendrycks & Gimpel 2016): x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))."""

    def __init__(self, ctx):
        super().__init__()

    def forward(self, x):
        return F.gelu(x)


class ReLU(nn.Module):
    """max(x, 0)."""

    def __init__(self, ctx):
        super().__init__()

    def forward(self, x):
        return F.relu(x)


class SiLU(nn.Module):
    """SiLU, also Swish-1 (Elfwing et al. 2017; Ramachandran et al. 2017): x * sigmoid(x)."""

    def __init__(self, ctx):
        super().__init__()

    def forward(self, x):
        return F.silu(x)


class SquaredReLU(nn.Module):
    """max(x, 0)^2, Primer's activation (So et al. 2021)."""

    def __init__(self, ctx):
        super().__init__()

    def forward(self, x):
        return torch.square(F.relu(x))
