"""Built-in activation components (implementations in activations.py beside this)."""

from explorer import Component, Param, hookimpl

_LAYERS = "explorer.plugins.activation.activations"

# The book writes the tanh polynomial out op by op; F.gelu(approximate="tanh") computes it in one
# kernel, about 5x faster and equal to ~1e-6 (benchmarks/README.md).
IMPL_HELP = ("auto: F.gelu(approximate='tanh'), in training too (the same function, ~1e-6); "
             "book: the kernel in eval mode, the book's written-out formula in training (bit for "
             "bit); manual: always the book's; fused: always F.gelu")


@hookimpl
def explorer_components():
    return [
        Component(
            kind="activation", name="gelu_tanh", factory=f"{_LAYERS}:GELUTanh",
            params=(Param("impl", str, "auto", IMPL_HELP, choices=("auto", "book", "manual", "fused"),
                          numerics_only=True),),
            description="GELU, tanh approximation (the book's and GPT-2's).",
        ),
        Component(
            kind="activation", name="gelu", factory=f"{_LAYERS}:GELU",
            description="GELU, exact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (BERT; GeGLU's).",
        ),
        Component(
            kind="activation", name="relu", factory=f"{_LAYERS}:ReLU",
            description="ReLU: max(x, 0) (the original Transformer; ReGLU's).",
        ),
        Component(
            kind="activation", name="silu", factory=f"{_LAYERS}:SiLU",
            description="SiLU / Swish-1: x * sigmoid(x) (SwiGLU's, with ffn glu: Llama).",
        ),
        Component(
            kind="activation", name="squared_relu", factory=f"{_LAYERS}:SquaredReLU",
            description="Squared ReLU: max(x, 0)^2 (Primer, So et al. 2021).",
        ),
    ]
