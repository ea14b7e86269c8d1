"""Built-in positional encodings (see explorer.contracts.PositionalEncoding)."""

from explorer import Component, Param, hookimpl

_LAYERS = "explorer.plugins.layers.positional"


@hookimpl
def explorer_components():
    return [
        Component(
            kind="positional", name="learned", factory=f"{_LAYERS}:LearnedPositional",
            description="A learned absolute position embedding added to the tokens (GPT-2).",
        ),
        Component(
            kind="positional", name="sinusoidal", factory=f"{_LAYERS}:SinusoidalPositional",
            params=(Param("base", float, 10000.0, "the wavelengths grow geometrically up to "
                          "2*pi*base"),),
            description="Fixed sin/cos position vectors added to the tokens (Vaswani et al. 2017).",
        ),
        Component(
            kind="positional", name="rope", factory=f"{_LAYERS}:RotaryPositional",
            params=(Param("theta", float, 10000.0, "the rotation base: pair j of a head turns "
                          "by position * theta^(-2j/head_dim)"),),
            description="Rotary embedding of queries and keys (RoPE; GPT-NeoX, Llama).",
        ),
        Component(
            kind="positional", name="alibi", factory=f"{_LAYERS}:ALiBiPositional",
            description="A per-head linear distance penalty on the attention scores "
                        "(ALiBi; BLOOM, MPT).",
        ),
        Component(
            kind="positional", name="none", factory=f"{_LAYERS}:NoPositional",
            description="No position information (NoPE): only the causal mask orders tokens.",
        ),
    ]
