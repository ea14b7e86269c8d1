"""Built-in feed-forward components."""

from explorer import Component, Param, hookimpl


@hookimpl
def explorer_components():
    return [
        Component(
            kind="ffn", name="mlp", factory="explorer.plugins.layers.ffn:MLP",
            params=(
                Param("expansion", int, 4, "hidden size = expansion * emb_dim"),
                Param("bias", bool, True, "biases on both linear layers"),
            ),
            description="Linear -> activation -> Linear, the book's FeedForward.",
        ),
    ]
