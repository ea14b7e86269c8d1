"""Built-in norm components (implementations in norms.py beside this)."""

from explorer import Component, Param, hookimpl

_LAYERS = "explorer.plugins.norm.norms"


# The book computes mean, var and sqrt op by op; F.layer_norm is one kernel, about 10x faster
# and equal to ~1e-6 (benchmarks/README.md).
IMPL_HELP = ("auto: F.layer_norm, in training too (the same function, ~1e-6); book: "
             "F.layer_norm in eval mode, the book's written-out ops in training (bit for bit); "
             "manual: always the book's; fused: always F.layer_norm")


@hookimpl
def explorer_components():
    return [
        Component(
            kind="norm", name="layernorm", factory=f"{_LAYERS}:LayerNorm",
            params=(Param("eps", float, 1e-5, "added to the variance before the square root",
                          min=0, exclusive_min=True),
                    Param("impl", str, "auto", IMPL_HELP, choices=("auto", "book", "manual", "fused"),
                          numerics_only=True)),
            description="The book's LayerNorm: learnable scale and shift, biased variance.",
        ),
        Component(
            kind="norm", name="rmsnorm", factory=f"{_LAYERS}:RMSNorm",
            params=(Param("eps", float, 1e-6, "added to the mean square before the square root "
                          "(1e-6: Llama 1, T5, Gemma; Llama 2 and Mistral use 1e-5)",
                          min=0, exclusive_min=True),
                    Param("unit_offset", bool, False, "scale by 1 + weight, weight initialised "
                          "to zeros (Gemma); false: scale by weight, initialised to ones")),
            description="RMSNorm (Zhang & Sennrich 2019; Llama): x / rms(x) * weight, no mean, "
                        "no shift.",
        ),
        Component(
            kind="norm", name="none", factory=f"{_LAYERS}:NoNorm",
            description="No normalisation: the identity, with no parameters (for ablations).",
        ),
    ]
