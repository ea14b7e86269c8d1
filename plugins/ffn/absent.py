"""``ffn: none``: a block without a feed-forward (imported only when building).

Mamba-2's layers are a mixer alone, and so are Nemotron-H's Mamba and attention layers. The
block adds this sublayer's zero to the shortcut and builds no norm for it (``absent``, read by
the residual styles), so its parameters are the mixer's and one norm, as in transformers.
"""

from torch import nn


class NoFeedForward(nn.Module):
    """Adds zero to the shortcut; no parameters."""

    absent = True

    def __init__(self, ctx):
        super().__init__()

    def forward(self, x):
        return x.new_zeros(()).expand_as(x)
