"""Built-in attention components."""

from explorer import Component, hookimpl


@hookimpl
def explorer_components():
    return [
        Component(
            kind="attention", name="mha", factory="explorer.plugins.layers.attention:MultiHeadAttention",
            description="Causal multi-head attention, the book's chapter-3 design "
                        "(W_query, W_key, W_value, out_proj).",
        ),
    ]
