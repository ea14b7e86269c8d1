"""Built-in attention components: mha and gqa (mha.py beside this), multi-head latent attention
(mla.py), and the linear-time mixers that take attention's place (mixer_components.py)."""

from explorer import Component, Param, ParamError, hookimpl

from .mixer_components import mixer_components

# How scores are scaled and capped; shared with every attention that scores q.k (mla too).
SCORE_PARAMS = (
    Param("softcap", float, 0.0, "attention-logit soft-capping: scores become softcap * "
          "tanh(scores / softcap), after scaling, before the mask (Gemma 2: 50.0); 0 = off. "
          "sdpa cannot cap: auto uses the manual path when it is on", min=0),
    Param("query_pre_attn_scalar", int, 0, "divide the scores by sqrt(this) instead of "
          "sqrt(head size) (Gemma 2 27B: 144); 0 = the head size", min=0),
)

IMPL = Param("impl", str, "auto", "auto: torch's scaled_dot_product_attention, with its own "
             "dropout in training (manual when softcap is on); book: sdpa unless attention "
             "dropout is active (training with a rate > 0) or softcap is on, then manual, so "
             "training is the book's bit for bit; manual: the book's masked softmax; sdpa: "
             "always the kernel", choices=("auto", "book", "manual", "sdpa"), numerics_only=True)
WINDOW = Param("window", int, 0, "sliding window: each token sees itself and the window - 1 "
               "tokens before it; 0 = the whole context", min=0)

HEAD_DIM = Param("head_dim", int, 0, "the size of each query/key/value head: the projections "
                 "are emb_dim -> n_heads * head_dim (keys and values: n_kv_heads * head_dim) and "
                 "back; 0 = emb_dim / n_heads (Gemma 2 2B: 256 at width 2304 with 8 heads; "
                 "Qwen3 0.6B: 128 at width 1024 with 16 heads)", min=0)

_COMMON = (
    IMPL,
    WINDOW,
    HEAD_DIM,
    Param("qk_norm", bool, False, "normalise queries and keys per head with the spec's norm "
          "(OLMo-2, Gemma 3)"),
    Param("out_bias", bool, True, "a bias on the output projection (GPT-2: yes; Llama: no)"),
    Param("output_gate", bool, False, "gated attention (Qwen3-Next): the output of each head "
          "times sigmoid of a second query-sized projection W_gate of x, before out_proj"),
    *SCORE_PARAMS,
)


def scores_can_be_computed(config, params):
    """torch's fused kernel cannot soft-cap the scores."""
    if params["softcap"] and params["impl"] == "sdpa":
        raise ParamError("impl", f"sdpa cannot soft-cap the scores (softcap {params['softcap']})",
                         "impl auto or manual, or softcap 0")


def kv_heads_divide_heads(config, params):
    """Grouped-query attention shares each key/value head by n_heads / n_kv_heads query heads."""
    scores_can_be_computed(config, params)
    n_heads, n_kv_heads = config.n_heads, params["n_kv_heads"]
    if n_heads % n_kv_heads:
        divisors = [k for k in range(1, n_heads + 1) if n_heads % k == 0]
        raise ParamError("n_kv_heads", f"{n_kv_heads} key/value heads cannot be shared by "
                         f"n_heads {n_heads} query heads",
                         f"a divisor of n_heads: {', '.join(map(str, divisors))}")


@hookimpl
def explorer_components():
    return [
        Component(
            kind="attention", name="mha", factory="explorer.plugins.attention.mha:MultiHeadAttention",
            params=_COMMON,
            check=scores_can_be_computed,
            description="Causal multi-head attention, the book's chapter-3 design "
                        "(W_query, W_key, W_value, out_proj).",
        ),
        Component(
            kind="attention", name="gqa",
            factory="explorer.plugins.attention.mha:GroupedQueryAttention",
            params=(Param("n_kv_heads", int, 1, "key/value heads, each shared by n_heads / "
                          "n_kv_heads query heads: 1 = multi-query, n_heads = multi-head", min=1),
                    *_COMMON),
            check=kv_heads_divide_heads,
            description="Causal grouped-query attention (Llama 2/3, Mistral); multi-query "
                        "with n_kv_heads 1.",
        ),
        *mixer_components(),
        Component(
            kind="attention", name="mla",
            factory="explorer.plugins.attention.mla:MultiHeadLatentAttention",
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
