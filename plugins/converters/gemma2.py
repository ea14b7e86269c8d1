"""Gemma 2 configs -> Llama's components with Gemma's switches: RMSNorm scaling by 1 + weight,
sandwich norms, embeddings scaled by sqrt(hidden_size), attention and final-logit soft-capping,
query_pre_attn_scalar, and sliding windows on alternate layers (``layer_types``)."""

from . import common


def convert(cfg):
    common.sizes(cfg, context_default=8192)
    common.rmsnorm(cfg, 1e-6, unit_offset=True)
    # transformers 4.42 wrote both names; Gemma 2's code reads hidden_activation only.
    cfg.ignore("hidden_act")
    common.activation(cfg, "hidden_activation", "gelu_pytorch_tanh")
    cfg.choose("ffn", "glu")
    cfg.set("components.ffn.hidden", cfg.integer("intermediate_size", minimum=1),
            "intermediate_size")
    cfg.choose("attention", "gqa")
    common.kv_heads(cfg, 4)
    common.attention_bias(cfg)
    common.head_dim(cfg, 256)
    cfg.set("components.attention.query_pre_attn_scalar",
            cfg.integer("query_pre_attn_scalar", 256, minimum=1), "query_pre_attn_scalar")
    cap = cfg.number("attn_logit_softcapping", 50.0)
    if cap:
        cfg.set("components.attention.softcap", cap, "attn_logit_softcapping")
    cap = cfg.number("final_logit_softcapping", 30.0)
    if cap:
        cfg.set("model.logit_softcap", cap, "final_logit_softcapping")
    if cfg.flag("use_bidirectional_attention", False):
        raise cfg.refuse("use_bidirectional_attention", "true: attention without the causal "
                         "mask", "explorer's models are causal (false)")
    common.rope(cfg, 10000.0)
    cfg.set("components.residual", "sandwich")
    cfg.set("model.scale_embeddings", True)
    common.tying(cfg, True)
    common.attention_dropout(cfg)
    n_layers = cfg.doc["model"]["n_layers"]
    windowed = common.layer_types(cfg, n_layers)
    if windowed is None:  # transformers' rule: layers 0, 2, 4, ... slide
        windowed = [i % 2 == 0 for i in range(n_layers)]
    size = cfg.integer("sliding_window", 4096, minimum=1)
    if any(windowed) and not size:
        raise cfg.refuse("sliding_window", "null, but layers slide", "a window size, e.g. 4096")
    common.windows(cfg, windowed, size, "sliding_window")
    # How transformers allocates its cache for generation, not what the model computes.
    cfg.ignore("cache_implementation")
