"""``attention: none``: a block without a token mixer (imported only when building).

Nemotron-H's layers each hold one sublayer: a Mamba-2 mixer, attention, or an MLP. An MLP layer
is a block whose mixer is this: it adds nothing to the shortcut, holds no parameters, and its
block builds no norm for it (``absent``, read by the residual styles). It still takes its
place in a :class:`ModelCache`, counting the tokens it is given, so cached generation runs.
"""

from torch import nn

from explorer.model.kv_cache import RecurrentState


class NoMixer(nn.Module):
    """Adds zero; caches nothing (``n_kv_heads``, ``head_dim`` and the state sizes are 0)."""

    absent = True
    n_heads = n_kv_heads = head_dim = window = 0
    kv_values_per_token = state_values_per_sequence = 0

    def __init__(self, ctx):
        super().__init__()

    def new_cache(self, max_len):
        return RecurrentState(max_len)

    def forward(self, x, pos, positions, cache=None):
        if cache is not None:
            cache.advance(x.shape[1])
        return x.new_zeros(()).expand_as(x)
