"""Built-in activation components."""

from explorer import Component, hookimpl


@hookimpl
def explorer_components():
    return [
        Component(
            kind="activation", name="gelu_tanh",
            factory="explorer.plugins.layers.activation:GELUTanh",
            description="GELU, tanh approximation (the book's and GPT-2's).",
        ),
    ]
