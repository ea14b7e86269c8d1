"""Feed-forward networks: the book's MLP and the gated GLU family (imported only when building).

Both get their activation from the spec (``ctx.make("activation")``), so GLU with silu is
SwiGLU, with gelu GeGLU and with relu ReGLU (Shazeer 2020).
"""

from torch import nn


class MLP(nn.Module):
    """The book's FeedForward: emb_dim -> expansion * emb_dim (or ``hidden``) -> emb_dim.

    Kept as ``layers = Sequential(Linear, activation, Linear)`` so the state_dict keys are the
    book's (``ff.layers.0.weight``, ``ff.layers.2.weight``).
    """

    def __init__(self, ctx, expansion, bias, hidden):
        super().__init__()
        d = ctx.config.emb_dim
        self.hidden = f = hidden or expansion * d  # the size built, 0 resolved
        self.layers = nn.Sequential(
            nn.Linear(d, f, bias=bias),
            ctx.make("activation"),
            nn.Linear(f, d, bias=bias),
        )

    def forward(self, x):
        return self.layers(x)


def llama_hidden(emb_dim, multiple_of):
    """Llama's FFN size: int(2 * 4 * emb_dim / 3), rounded up to a multiple of ``multiple_of``.

    Two thirds of a 4h MLP's hidden size, so the three matrices of a gated FFN (3 * h * f) hold
    about the 8 h^2 of the MLP's two: 768 -> 2048, 4096 -> 11008 (Llama-7B).
    """
    hidden = int(2 * 4 * emb_dim / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class GLU(nn.Module):
    """Gated feed-forward (Shazeer 2020; Llama): proj(act(fc_1(x)) * fc_2(x)).

    The names are litgpt's LLaMAMLP: ``fc_1`` feeds the activation (the gate, Llama's w1),
    ``fc_2`` is the linear "up" branch it multiplies (w3), ``proj`` projects back down (w2).
    Created in that order. ``hidden`` 0 picks :func:`llama_hidden`; any other value is used as is.
    """

    def __init__(self, ctx, hidden, multiple_of, bias):
        super().__init__()
        d = ctx.config.emb_dim
        self.hidden = f = hidden or llama_hidden(d, multiple_of)  # the size built, 0 resolved
        self.fc_1 = nn.Linear(d, f, bias=bias)
        self.fc_2 = nn.Linear(d, f, bias=bias)
        self.proj = nn.Linear(f, d, bias=bias)
        self.act = ctx.make("activation")

    def forward(self, x):
        return self.proj(self.act(self.fc_1(x)) * self.fc_2(x))  # (B, T, f) -> (B, T, C)
