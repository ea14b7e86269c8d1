"""Built-in feed-forward components (implementations in layers/ffn.py)."""

from explorer import Component, Param, hookimpl

_LAYERS = "explorer.plugins.layers.ffn"


@hookimpl
def explorer_components():
    return [
        Component(
            kind="ffn", name="mlp", factory=f"{_LAYERS}:MLP",
            params=(
                Param("expansion", int, 4, "hidden size = expansion * emb_dim", min=1),
                Param("bias", bool, True, "biases on both linear layers"),
            ),
            description="Linear -> activation -> Linear, the book's FeedForward.",
        ),
        Component(
            kind="ffn", name="glu", factory=f"{_LAYERS}:GLU",
            params=(
                Param("hidden", int, 0, "hidden size f; 0 = Llama's rule: int(2 * 4 * emb_dim "
                      "/ 3) rounded up to a multiple of multiple_of (768 -> 2048, 4096 -> 11008)",
                      min=0),
                Param("multiple_of", int, 256, "the automatic hidden size is rounded up to a "
                      "multiple of this (Llama: 256); ignored when hidden > 0", min=1),
                Param("bias", bool, False, "biases on all three linear layers (Llama: none)"),
            ),
            description="Gated FFN proj(act(fc_1(x)) * fc_2(x)): SwiGLU with silu, GeGLU with "
                        "gelu, ReGLU with relu; hidden 0 = int(8h/3) rounded up to multiple_of.",
        ),
    ]
