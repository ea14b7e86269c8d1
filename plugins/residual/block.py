"""Transformer blocks: one per residual style, differing only in how the sublayers meet the shortcut.

Every style builds its parts in the book's order (attention, feed-forward, then its norms), so
the same seed gives the same attention and feed-forward weights whatever the style; a style
lists the norms it uses in ``norms`` and writes ``forward``.
"""

from torch import nn


class Block(nn.Module):
    """The parts every residual style shares, created in the book's order (att, ff, norms).

    A residual style subclasses this, names its norms in ``norms`` (created in that order, each
    of width emb_dim) and writes only ``forward``. ``serves`` says which sublayers each norm
    normalises for: a norm whose sublayers are all ``absent`` (``ffn: none``, ``attention:
    none``, which add zero) is an identity without parameters, so a one-sublayer block holds
    one norm, as Mamba-2's and Nemotron-H's layers do.
    """

    norms = ("norm1", "norm2")
    serves = {"norm1": ("att",), "norm2": ("ff",), "post_norm1": ("att",), "post_norm2": ("ff",)}

    def __init__(self, ctx):
        super().__init__()
        cfg = ctx.config
        self.att = ctx.make("attention")
        self.ff = ctx.make("ffn")
        for name in self.norms:
            absent = all(getattr(getattr(self, part), "absent", False) for part in self.serves[name])
            setattr(self, name, nn.Identity() if absent else ctx.make("norm", dim=cfg.emb_dim))
        self.drop_shortcut = nn.Dropout(cfg.dropout.residual)


class PreNormBlock(Block):
    """The book's TransformerBlock (section 4.5), GPT-2: normalise each sublayer's input."""

    def forward(self, x, pos, positions, cache=None):
        x = x + self.drop_shortcut(self.att(self.norm1(x), pos, positions, cache=cache))
        x = x + self.drop_shortcut(self.ff(self.norm2(x)))
        return x


class PostNormBlock(Block):
    """The original Transformer (Vaswani et al., 2017): normalise after each residual sum."""

    def forward(self, x, pos, positions, cache=None):
        x = self.norm1(x + self.drop_shortcut(self.att(x, pos, positions, cache=cache)))
        x = self.norm2(x + self.drop_shortcut(self.ff(x)))
        return x


class ParallelBlock(Block):
    """GPT-J / PaLM: attention and feed-forward read the same normalised input, side by side.

    One norm is shared by both branches, as in GPT-J (``ln_1``) and PaLM; a second norm on the
    same ``x`` would only add a scale and shift, and would sit unused if created. (GPT-NeoX
    instead gives each branch its own norm.)
    """

    norms = ("norm1",)
    serves = {"norm1": ("att", "ff")}

    def forward(self, x, pos, positions, cache=None):
        h = self.norm1(x)
        a = self.att(h, pos, positions, cache=cache)
        return x + self.drop_shortcut(a) + self.drop_shortcut(self.ff(h))


class SandwichBlock(Block):
    """Sandwich norm (CogView, Gemma 2): normalise each sublayer's input and its output.

    ``post_norm1``/``post_norm2`` rescale what each sublayer adds to the shortcut, so no single
    layer can swamp the residual stream.
    """

    norms = ("norm1", "norm2", "post_norm1", "post_norm2")

    def forward(self, x, pos, positions, cache=None):
        a = self.att(self.norm1(x), pos, positions, cache=cache)
        x = x + self.drop_shortcut(self.post_norm1(a))
        x = x + self.drop_shortcut(self.post_norm2(self.ff(self.norm2(x))))
        return x


class NoShortcutBlock(Block):
    """No shortcut at all: the book's section 4.4 experiment on a whole GPT (gradients vanish)."""

    def forward(self, x, pos, positions, cache=None):
        x = self.drop_shortcut(self.att(self.norm1(x), pos, positions, cache=cache))
        x = self.drop_shortcut(self.ff(self.norm2(x)))
        return x
