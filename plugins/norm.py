"""Built-in norm components."""

from explorer import Component, Param, hookimpl


@hookimpl
def explorer_components():
    return [
        Component(
            kind="norm", name="layernorm", factory="explorer.plugins.layers.norm:LayerNorm",
            params=(Param("eps", float, 1e-5, "added to the variance before the square root"),),
            description="The book's LayerNorm: learnable scale and shift, biased variance.",
        ),
    ]
