from torch import nn


class MLP(nn.Module):
    """The book's FeedForward: emb_dim -> expansion * emb_dim -> emb_dim.

    Kept as ``layers = Sequential(Linear, activation, Linear)`` so the state_dict keys are the
    book's (``ff.layers.0.weight``, ``ff.layers.2.weight``).
    """

    def __init__(self, ctx, expansion=4, bias=True):
        super().__init__()
        d = ctx.config.emb_dim
        self.layers = nn.Sequential(
            nn.Linear(d, expansion * d, bias=bias),
            ctx.make("activation"),
            nn.Linear(expansion * d, d, bias=bias),
        )

    def forward(self, x):
        return self.layers(x)
