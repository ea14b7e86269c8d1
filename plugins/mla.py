"""The built-in multi-head latent attention (implementation in layers/mla.py)."""

from explorer import Component, Param, ParamError, hookimpl

from .attention import IMPL, SCORE_PARAMS, WINDOW, scores_can_be_computed


@hookimpl
def explorer_components():
    return [
        Component(
            kind="attention", name="mla",
            factory="explorer.plugins.layers.mla:MultiHeadLatentAttention",
            params=(
                Param("kv_lora_rank", int, 512, "the latent each token's keys and values are "
                      "compressed to, and all the KV cache holds besides the rope key "
                      "(DeepSeek-V2: 512)", min=1),
                Param("q_lora_rank", int, 0, "compress queries to this rank first; 0 = no "
                      "query compression (DeepSeek-V2-Lite: 0, V2: 1536)", min=0),
                Param("qk_nope_head_dim", int, 128, "per-head query/key dims without position, "
                      "from the latent (DeepSeek-V2: 128)", min=0),
                Param("qk_rope_head_dim", int, 64, "per-head query dims, and the one key shared "
                      "by all heads, that the positional encoding rotates (DeepSeek-V2: 64)", min=2),
                Param("v_head_dim", int, 128, "per-head value dims (DeepSeek-V2: 128)", min=1),
                IMPL, WINDOW,
                Param("out_bias", bool, False, "a bias on the output projection (DeepSeek: no)"),
                Param("score_scale", float, 1.0, "multiplies the scores' scale 1 / sqrt(nope + "
                      "rope): DeepSeek with YaRN, (0.1 * mscale_all_dim * ln(factor) + 1)^2 "
                      "(V2-Lite: 1.59)", min=0, exclusive_min=True),
                *SCORE_PARAMS,
            ),
            check=rope_part_is_even,
            description="Multi-head latent attention (DeepSeek-V2/V3): keys and values from a "
                        "cached low-rank latent, with a decoupled RoPE key.",
        ),
    ]


def rope_part_is_even(config, params):
    """RoPE rotates pairs of dimensions; and the scores must be computable."""
    scores_can_be_computed(config, params)
    if params["qk_rope_head_dim"] % 2:
        raise ParamError("qk_rope_head_dim", f"must be even, got {params['qk_rope_head_dim']}",
                         "RoPE rotates pairs of dimensions, e.g. 64 (DeepSeek-V2)")
