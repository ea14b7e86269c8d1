"""The built-in multi-head latent attention (implementation in layers/mla.py)."""

from explorer import Component, Param, hookimpl

from .attention import IMPL, SCORE_PARAMS, WINDOW


@hookimpl
def explorer_components():
    return [
        Component(
            kind="attention", name="mla",
            factory="explorer.plugins.layers.mla:MultiHeadLatentAttention",
            params=(
                Param("kv_lora_rank", int, 512, "the latent each token's keys and values are "
                      "compressed to, and all the KV cache holds besides the rope key "
                      "(DeepSeek-V2: 512)"),
                Param("q_lora_rank", int, 0, "compress queries to this rank first; 0 = no "
                      "query compression (DeepSeek-V2-Lite: 0, V2: 1536)"),
                Param("qk_nope_head_dim", int, 128, "per-head query/key dims without position, "
                      "from the latent (DeepSeek-V2: 128)"),
                Param("qk_rope_head_dim", int, 64, "per-head query dims, and the one key shared "
                      "by all heads, that the positional encoding rotates (DeepSeek-V2: 64)"),
                Param("v_head_dim", int, 128, "per-head value dims (DeepSeek-V2: 128)"),
                IMPL, WINDOW,
                Param("out_bias", bool, False, "a bias on the output projection (DeepSeek: no)"),
                *SCORE_PARAMS,
            ),
            description="Multi-head latent attention (DeepSeek-V2/V3): keys and values from a "
                        "cached low-rank latent, with a decoupled RoPE key.",
        ),
    ]


def mla_problem(params):
    """What the Param types cannot judge, for a spec's mla params: ``(param, what is wrong, what
    would be valid)``, or None. Torch-free, like moe_problem."""
    sizes = [
        ("kv_lora_rank", 1, "e.g. 512 (DeepSeek-V2)"),
        ("q_lora_rank", 0, "0 for no query compression (DeepSeek-V2-Lite), e.g. 1536 (DeepSeek-V2)"),
        ("qk_nope_head_dim", 0, "e.g. 128 (DeepSeek-V2)"),
        ("qk_rope_head_dim", 2, "RoPE rotates pairs of dimensions, e.g. 64 (DeepSeek-V2)"),
        ("v_head_dim", 1, "e.g. 128 (DeepSeek-V2)"),
        ("window", 0, "0 for no sliding window, or a window size >= 1"),
    ]
    for name, least, valid in sizes:
        if params[name] < least:
            return name, f"must be >= {least}, got {params[name]}", valid
    if params["qk_rope_head_dim"] % 2:
        return ("qk_rope_head_dim", f"must be even, got {params['qk_rope_head_dim']}",
                "RoPE rotates pairs of dimensions, e.g. 64 (DeepSeek-V2)")
    return None
