"""Built-in positional encodings (see explorer.contracts.PositionalEncoding)."""

from explorer import Component, Param, ParamError, hookimpl

_LAYERS = "explorer.plugins.layers.positional"


def rotated_size(config, attention):
    """The size RoPE rotates with ``attention`` (a ComponentChoice): a latent attention's rope
    part (which its own check keeps even), an attention's ``head_dim`` when it sets one, else the
    head size emb_dim / n_heads."""
    params = attention.params
    if "qk_rope_head_dim" in params:
        return params["qk_rope_head_dim"], "qk_rope_head_dim"
    if params.get("head_dim"):
        return params["head_dim"], "the attention's head_dim"
    return config.head_dim, f"emb_dim {config.emb_dim} / n_heads {config.n_heads}"


def even_head_size(config, params, choices):
    """RoPE rotates pairs of dimensions within each head."""
    size, what = rotated_size(config, choices["attention"])
    if size % 2:
        valid = ("choose emb_dim / n_heads even" if what.startswith("emb_dim")
                 else "choose an even components.attention.head_dim")
        raise ParamError(None, f"rope rotates pairs of dimensions, but the head size is odd: "
                               f"{what} = {size}", valid)


@hookimpl
def explorer_components():
    return [
        Component(
            kind="positional", name="learned", factory=f"{_LAYERS}:LearnedPositional",
            model_wide=True,
            description="A learned absolute position embedding added to the tokens (GPT-2).",
        ),
        Component(
            kind="positional", name="sinusoidal", factory=f"{_LAYERS}:SinusoidalPositional",
            model_wide=True,
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
