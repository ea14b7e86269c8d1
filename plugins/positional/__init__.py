"""Built-in positional encodings (see explorer.model.contracts.PositionalEncoding)."""

from explorer import Component, Param, ParamError, hookimpl

_LAYERS = "explorer.plugins.positional.encodings"


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


ROPE_SCALING = (
    Param("scaling", str, "none", "context extension: linear (every frequency / factor), "
          "llama3 (Llama 3.1: long wavelengths / factor, short kept, smooth between), yarn "
          "(YaRN: DeepSeek-V2/V3, Qwen long context) or none", choices=(
              "none", "linear", "llama3", "yarn")),
    Param("factor", float, 1.0, "how many times the context is extended (Llama 3.1: 8; "
          "DeepSeek-V2: 40)", min=0, exclusive_min=True),
    Param("original_context", int, 0, "llama3, yarn: the context length of pre-training "
          "(Llama 3.1: 8192; DeepSeek-V2: 4096)", min=0),
    Param("low_freq_factor", float, 1.0, "llama3: wavelengths above original_context / this "
          "are divided by factor", min=0, exclusive_min=True),
    Param("high_freq_factor", float, 4.0, "llama3: wavelengths below original_context / this "
          "are kept", min=0, exclusive_min=True),
    Param("beta_fast", float, 32.0, "yarn: dimensions turning more often than this over the "
          "original context are kept", min=0, exclusive_min=True),
    Param("beta_slow", float, 1.0, "yarn: dimensions turning less often than this are "
          "interpolated", min=0, exclusive_min=True),
    Param("truncate", bool, True, "yarn: round the ramp's ends to whole dimensions"),
    Param("attention_factor", float, 1.0, "multiplies cos and sin, so the scores by its square "
          "(YaRN: 0.1 ln(factor) + 1, or the ratio of DeepSeek's mscales)", min=0,
          exclusive_min=True),
)


def rope_is_computable(config, params, choices):
    """An even rotated size, and what the scaling needs."""
    even_head_size(config, params, choices)
    scaling = params["scaling"]
    if scaling in ("llama3", "yarn") and not params["original_context"]:
        raise ParamError("original_context", f"{scaling} needs the pre-training context length",
                         "e.g. 8192 (Llama 3.1), 4096 (DeepSeek-V2)")
    if scaling == "llama3" and params["high_freq_factor"] <= params["low_freq_factor"]:
        raise ParamError("high_freq_factor", f"must be above low_freq_factor "
                         f"{params['low_freq_factor']}, got {params['high_freq_factor']}",
                         "e.g. 4.0 over 1.0 (Llama 3.1)")


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
                          "by position * theta^(-2j/head_dim)", min=0, exclusive_min=True),
                    Param("fraction", float, 1.0, "the part of each head that rotates: its first "
                          "int(head_dim * fraction) dims, as a head of that size (transformers' "
                          "partial_rotary_factor; Qwen3-Next: 0.25); the rest passes unrotated",
                          min=0, max=1, exclusive_min=True),
                    *ROPE_SCALING),
            check=rope_is_computable,
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
