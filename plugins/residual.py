"""Built-in residual styles: each is a transformer block wiring attention and FFN to the shortcut."""

from explorer import Component, hookimpl


@hookimpl
def explorer_components():
    return [
        Component(
            kind="residual", name="pre_norm", factory="explorer.plugins.layers.block:PreNormBlock",
            description="x + attn(norm1(x)), then x + ffn(norm2(x)): the book's TransformerBlock.",
        ),
    ]
