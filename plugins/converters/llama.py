"""Llama-family configs (llama, mistral, qwen2, qwen3, mixtral) -> specs of the built-in
components: rmsnorm, silu, glu (mixtral: moe), gqa, rope, pre_norm.

The family members differ in a few switches, :class:`Family`, each with transformers' defaults
for the fields a config leaves out (its config classes' defaults).
"""

from dataclasses import dataclass, field

from . import common


@dataclass(frozen=True)
class Family:
    """What one model_type's config can say."""

    # Attention biases: "attention_bias" (that field biases q, k, v and o together: llama,
    # qwen3), "qkv" (q, k, v always, o never: qwen2) or "none" (mistral, mixtral).
    bias: str
    # The sliding window: "none", "sliding_window" (one window for every layer, null for none:
    # mistral, mixtral) or "qwen" (use_sliding_window, sliding_window, max_window_layers).
    window: str
    qk_norm: bool = False  # qwen3: RMSNorm on each head's queries and keys
    moe: bool = False  # mixtral: num_local_experts experts of intermediate_size, top k
    mlp_bias: bool = False  # llama: mlp_bias biases gate, up and down
    defaults: dict = field(default_factory=dict)  # transformers' defaults for absent fields


_COMMON = {"rms_norm_eps": 1e-6, "num_key_value_heads": None, "rope_theta": 10000.0,
           "head_dim": None, "sliding_window": None, "tie_word_embeddings": False}
_QWEN = {**_COMMON, "max_position_embeddings": 32768, "num_key_value_heads": 32,
         "use_sliding_window": False, "sliding_window": 4096, "max_window_layers": 28}

FAMILIES = {
    "llama": Family("attention_bias", "none", mlp_bias=True,
                    defaults={**_COMMON, "max_position_embeddings": 2048}),
    "mistral": Family("none", "sliding_window", defaults={
        **_COMMON, "max_position_embeddings": 131072, "num_key_value_heads": 8,
        "sliding_window": 4096}),
    "qwen2": Family("qkv", "qwen", defaults=_QWEN),
    "qwen3": Family("attention_bias", "qwen", qk_norm=True, defaults={**_QWEN, "head_dim": 128}),
    "mixtral": Family("none", "sliding_window", moe=True, defaults={
        **_COMMON, "max_position_embeddings": 131072, "num_key_value_heads": 8,
        "rms_norm_eps": 1e-5, "rope_theta": 1e6}),
}


def convert(cfg, family=None):
    family = family or FAMILIES[cfg.model_type]
    d = family.defaults
    common.sizes(cfg, context_default=d["max_position_embeddings"])
    common.rmsnorm(cfg, d["rms_norm_eps"])
    common.activation(cfg, "hidden_act", "silu")
    if family.moe:
        _experts(cfg)
    else:
        cfg.choose("ffn", "glu")
        cfg.set("components.ffn.hidden", cfg.integer("intermediate_size", minimum=1),
                "intermediate_size")
        if family.mlp_bias:
            cfg.set("components.ffn.bias", cfg.flag("mlp_bias", False), "mlp_bias")
    _attention(cfg, family)
    common.rope(cfg, d["rope_theta"])
    cfg.set("components.residual", "pre_norm")
    common.tying(cfg, d["tie_word_embeddings"])
    common.attention_dropout(cfg)


def _attention(cfg, family):
    d = family.defaults
    cfg.choose("attention", "gqa")  # gqa with n_kv_heads = n_heads is multi-head attention
    common.kv_heads(cfg, d["num_key_value_heads"])
    if family.bias == "attention_bias":
        common.attention_bias(cfg)
    else:
        cfg.set("model.qkv_bias", family.bias == "qkv")
        cfg.set("components.attention.out_bias", False)
    common.head_dim(cfg, d["head_dim"])
    if family.qk_norm:
        cfg.set("components.attention.qk_norm", True)
    _windows(cfg, family)


def _windows(cfg, family):
    """The sliding window, on every layer or (Qwen's layer_types) on some."""
    d = family.defaults
    if family.window == "none":
        return
    n_layers = cfg.doc["model"]["n_layers"]
    if family.window == "sliding_window":
        size = cfg.integer("sliding_window", d["sliding_window"], minimum=1)
        common.windows(cfg, [bool(size)] * n_layers, size, "sliding_window")
        return
    # Qwen: a window only with use_sliding_window, on the layers from max_window_layers on, or
    # on those layer_types names sliding_attention.
    size = cfg.integer("sliding_window", d["sliding_window"], minimum=1)
    used = cfg.flag("use_sliding_window", d["use_sliding_window"])
    first = cfg.integer("max_window_layers", d["max_window_layers"], minimum=0)
    windowed = common.layer_types(cfg, n_layers)
    if windowed is None:
        windowed = [bool(used and size) and i >= first for i in range(n_layers)]
    elif any(windowed) and not (used and size):
        raise cfg.refuse("layer_types", "names sliding_attention layers but use_sliding_window "
                         "is false or sliding_window null", "set both, or make every layer "
                         "full_attention")
    common.windows(cfg, windowed, size, "sliding_window")


def _experts(cfg):
    """Mixtral's sparse mixture: experts of intermediate_size, the top k renormalised."""
    cfg.choose("ffn", "moe")
    n = cfg.integer("num_local_experts", 8, minimum=1)
    cfg.set("components.ffn.n_experts", n, "num_local_experts")
    cfg.set("components.ffn.top_k", cfg.integer("num_experts_per_tok", 2, minimum=1),
            "num_experts_per_tok")
    cfg.set("components.ffn.hidden", cfg.integer("intermediate_size", minimum=1),
            "intermediate_size")
    cfg.set("components.ffn.router", "softmax_topk_renorm")
    cfg.set("components.ffn.aux_loss_coef", cfg.number("router_aux_loss_coef", 0.001),
            "router_aux_loss_coef")
    cfg.set("components.ffn.z_loss_coef", 0.0)  # Mixtral trains without a router z-loss
    jitter = cfg.number("router_jitter_noise", 0.0)
    if jitter:
        raise cfg.refuse("router_jitter_noise", f"{jitter}: explorer's moe adds no noise to "
                         "the router in training", "0.0")
