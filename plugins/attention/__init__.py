"""Built-in attention components: mha and gqa (mha.py beside this), multi-head latent attention
(mla.py), Mamba-2's SSD mixer (mamba2.py), the other linear-time mixers that take attention's
place (mixer_components.py) and ``none`` (absent.py: a block without a mixer)."""

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
        Component(
            kind="attention", name="mamba2",
            factory="explorer.plugins.attention.mamba2:Mamba2Mixer",
            params=MAMBA2_PARAMS,
            check=mamba2_shapes_fit,
            description="Mamba-2's SSD layer (state-space duality): causal conv, per-head "
                        "decay A and step dt, D skip, gated RMSNorm; chunked in training, "
                        "recurrent in generation, a fixed-size state instead of a KV cache.",
        ),
        Component(
            kind="attention", name="none", factory="explorer.plugins.attention.absent:NoMixer",
            check=a_block_keeps_a_sublayer,
            description="No token mixer: the block is its feed-forward alone (Nemotron-H's "
                        "MLP layers), with no norm before it.",
        ),
    ]


MAMBA2_PARAMS = (
    Param("heads", int, 0, "SSM heads; 0 = expand * emb_dim / head_dim (Mamba-2 2.7B: 80; "
          "Nemotron-H-8B: 128)", min=0),
    Param("expand", int, 2, "inner width = expand * emb_dim when heads is 0 (Mamba-2: 2)", min=1),
    Param("head_dim", int, 64, "channels per SSM head, each with its own (head_dim, d_state) "
          "state (Mamba-2: 64)", min=1),
    Param("d_state", int, 128, "the state size N: B and C per group (Mamba-2: 128)", min=1),
    Param("n_groups", int, 1, "groups of B and C, each shared by heads / n_groups heads; also "
          "the gated norm's groups (Mamba-2 2.7B: 1; Nemotron-H-8B: 8)", min=1),
    Param("conv_kernel", int, 4, "width of the causal depthwise convolution over x, B, C",
          min=1),
    Param("chunk_size", int, 256, "tokens per chunk of the training scan: quadratic within a "
          "chunk, recurrent across (the same outputs at any size)", min=1, numerics_only=True),
    Param("conv_bias", bool, True, "a bias on the convolution (Mamba-2: yes)"),
    Param("bias", bool, False, "biases on in_proj and out_proj (Mamba-2: none)"),
    Param("norm_eps", float, 1e-5, "epsilon of the gated RMSNorm", min=0, exclusive_min=True),
    Param("dt_min", float, 0.001, "initial steps are log-uniform in [dt_min, dt_max]",
          min=0, exclusive_min=True),
    Param("dt_max", float, 0.1, "see dt_min", min=0, exclusive_min=True),
    Param("dt_floor", float, 1e-4, "initial steps are at least this", min=0),
    Param("dt_limit_min", float, 0.0, "clamp softplus(dt + dt_bias) to at least this "
          "(transformers' time_step_limit[0])", min=0),
    Param("dt_limit_max", float, 0.0, "clamp the step to at most this; 0 = no limit "
          "(time_step_limit[1] inf)", min=0),
)


def mamba2_shapes_fit(config, params):
    """The inner width splits into heads, the heads into groups."""
    heads, head_dim = params["heads"], params["head_dim"]
    if not heads:
        inner = params["expand"] * config.emb_dim
        if inner % head_dim:
            fits = max(d for d in range(1, min(head_dim, inner) + 1) if inner % d == 0)
            raise ParamError("head_dim", f"{head_dim} does not divide the inner width "
                             f"expand * emb_dim = {inner}", f"a divisor of it, e.g. {fits}, "
                             "or heads > 0")
        heads = inner // head_dim
    if heads % params["n_groups"]:
        raise ParamError("n_groups", f"{params['n_groups']} groups cannot share {heads} heads",
                         "a divisor of the heads")
    if params["dt_min"] > params["dt_max"]:
        raise ParamError("dt_min", f"{params['dt_min']} is above dt_max {params['dt_max']}")


def a_block_keeps_a_sublayer(config, params, choices):
    """A block with neither a mixer nor a feed-forward would compute nothing."""
    if choices["ffn"].name == "none":
        raise ParamError(None, "none with ffn none: the block would compute nothing",
                         "a token mixer here, or an ffn")


def rope_part_is_even(config, params):
    """RoPE rotates pairs of dimensions; and the scores must be computable."""
    scores_can_be_computed(config, params)
    if params["qk_rope_head_dim"] % 2:
        raise ParamError("qk_rope_head_dim", f"must be even, got {params['qk_rope_head_dim']}",
                         "RoPE rotates pairs of dimensions, e.g. 64 (DeepSeek-V2)")
