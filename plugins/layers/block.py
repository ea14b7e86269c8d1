from torch import nn


class Block(nn.Module):
    """The parts every residual style shares, created in the book's order (att, ff, norms).

    A residual style subclasses this and writes only ``forward``.
    """

    def __init__(self, ctx):
        super().__init__()
        cfg = ctx.config
        self.att = ctx.make("attention")
        self.ff = ctx.make("ffn")
        self.norm1 = ctx.make("norm", dim=cfg.emb_dim)
        self.norm2 = ctx.make("norm", dim=cfg.emb_dim)
        self.drop_shortcut = nn.Dropout(cfg.dropout.residual)


class PreNormBlock(Block):
    """The book's TransformerBlock (section 4.5)."""

    def forward(self, x, pos, positions):
        x = x + self.drop_shortcut(self.att(self.norm1(x), pos, positions))
        x = x + self.drop_shortcut(self.ff(self.norm2(x)))
        return x
