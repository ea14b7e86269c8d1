"""Built-in positional encodings (see explorer.contracts.PositionalEncoding)."""

from explorer import Component, Param, ParamError, hookimpl

_LAYERS = "explorer.plugins.layers.positional"


def even_head_size(config, params):
    """RoPE rotates pairs of dimensions within each head."""
    if config.head_dim % 2:
        raise ParamError(None, f"rope rotates pairs of dimensions, but the head size is odd: "
                               f"emb_dim {config.emb_dim} / n_heads {config.n_heads} = "
                               f"{config.head_dim}", "choose emb_dim / n_heads even")


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
                          "2*pi*base", min=0, exclusive_min=True),),
            description="Fixed sin/cos position vectors added to the tokens (Vaswani et al. 2017).",
        ),
        Component(
            kind="positional", name="rope", factory=f"{_LAYERS}:RotaryPositional",
            params=(Param("theta", float, 10000.0, "the rotation base: pair j of a head turns "
                          "by position * theta^(-2j/head_dim)", min=0, exclusive_min=True),),
            check=even_head_size,
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
