"""Built-in residual styles: each is a transformer block wiring attention and FFN to the shortcut."""

from explorer import Component, hookimpl

_BLOCKS = "explorer.plugins.residual.block"


@hookimpl
def explorer_components():
    return [
        Component(
            kind="residual", name="pre_norm", factory=f"{_BLOCKS}:PreNormBlock",
            description="x + attn(norm1(x)), then x + ffn(norm2(x)): the book's TransformerBlock.",
        ),
        Component(
            kind="residual", name="post_norm", factory=f"{_BLOCKS}:PostNormBlock",
            description="norm1(x + attn(x)), then norm2(x + ffn(x)): the original Transformer.",
        ),
        Component(
            kind="residual", name="parallel", factory=f"{_BLOCKS}:ParallelBlock",
            description="x + attn(norm1(x)) + ffn(norm1(x)), one shared norm: GPT-J, PaLM.",
        ),
        Component(
            kind="residual", name="sandwich", factory=f"{_BLOCKS}:SandwichBlock",
            description="x + post_norm(attn(norm(x))) for each sublayer: CogView, Gemma 2.",
        ),
        Component(
            kind="residual", name="none", factory=f"{_BLOCKS}:NoShortcutBlock",
            description="attn(norm1(x)), then ffn(norm2(x)), no shortcut: the book's section 4.4.",
        ),
    ]
