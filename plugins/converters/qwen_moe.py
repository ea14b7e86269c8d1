"""Qwen2-MoE and Qwen3-MoE configs -> Llama's components with a mixture of experts (``moe``) in
the sparse layers and the dense ``glu`` of ``intermediate_size`` in the others.

Both route with a softmax over ``num_experts``, the top ``num_experts_per_tok`` renormalised
only with ``norm_topk_prob``. A layer is sparse unless it is in ``mlp_only_layers`` or
``(i + 1) % decoder_sparse_step`` is not 0 (or there are no experts): transformers'
Qwen2MoeDecoderLayer. Qwen2-MoE adds one shared expert of ``shared_expert_intermediate_size``
scaled per token by sigmoid(``shared_expert_gate``), and biases q, k and v (``qkv_bias``);
Qwen3-MoE has no shared expert, and Qwen3's per-head q/k RMSNorm. Defaults are transformers'
for the fields a config leaves out (its config classes'). The sliding window, which no
published Qwen-MoE uses and whose layers transformers' versions choose differently, is refused.
"""

from . import common

# transformers' defaults for absent fields, per model_type.
DEFAULTS = {
    "qwen2_moe": {"num_key_value_heads": 16, "num_experts": 60, "num_experts_per_tok": 4,
                  "moe_intermediate_size": 1408, "intermediate_size": 5632,
                  "shared_expert_intermediate_size": 5632},
    "qwen3_moe": {"num_key_value_heads": 4, "num_experts": 128, "num_experts_per_tok": 8,
                  "moe_intermediate_size": 768, "intermediate_size": 6144},
}


SHARED_EXPERT = ("qwen2_moe", "qwen3_next")  # one shared expert, gated by a sigmoid


def convert(cfg):
    d = DEFAULTS[cfg.model_type]
    common.sizes(cfg, context_default=32768)
    common.rmsnorm(cfg, 1e-6)
    common.activation(cfg, "hidden_act", "silu")
    _attention(cfg, d)
    common.rope(cfg, 10000.0)
    cfg.set("components.residual", "pre_norm")
    common.tying(cfg, False)
    common.attention_dropout(cfg)
    _no_sliding_window(cfg)
    _feed_forward(cfg, d)


def _attention(cfg, d):
    cfg.choose("attention", "gqa")
    common.kv_heads(cfg, d["num_key_value_heads"])
    if cfg.model_type == "qwen2_moe":  # q, k and v biased (transformers 5 can turn them off)
        cfg.set("model.qkv_bias", cfg.flag("qkv_bias", True), "qkv_bias")
        cfg.set("components.attention.out_bias", False)
    else:  # Qwen3: attention_bias biases q, k, v and o together
        common.attention_bias(cfg)
    common.head_dim(cfg)
    if cfg.model_type == "qwen3_moe":
        cfg.set("components.attention.qk_norm", True)


def _no_sliding_window(cfg):
    """use_sliding_window must be false; then sliding_window and max_window_layers mean
    nothing, and layer_types (which transformers 5 writes) names full attention only."""
    if cfg.flag("use_sliding_window", False):
        raise cfg.refuse("use_sliding_window", f"true: explorer does not convert the sliding "
                         f"window of {cfg.model_type} (transformers' versions differ on which "
                         "layers slide, and no published model uses it)", "false")
    cfg.ignore("sliding_window", "max_window_layers")
    sliding = common.layer_types(cfg, cfg.doc["model"]["n_layers"]) or ()
    if any(sliding):
        raise cfg.refuse("layer_types", "names sliding_attention layers but use_sliding_window "
                         "is false", "full_attention for every layer")


def _experts_field(cfg, default):
    """Qwen3-MoE's expert count: num_experts, which transformers 5 saves as num_local_experts."""
    n = cfg.integer("num_experts", None, minimum=0)
    local = cfg.integer("num_local_experts", None, minimum=0)
    if n is not None and local is not None and n != local:
        raise cfg.refuse("num_local_experts", f"{local} but num_experts is {n}",
                         "one of them, or both equal")
    if n is None and local is not None:
        return local, "num_local_experts"
    return (default if n is None else n), "num_experts"


def _feed_forward(cfg, d):
    n_layers = cfg.doc["model"]["n_layers"]
    if cfg.model_type == "qwen3_moe":
        n_experts, field = _experts_field(cfg, d["num_experts"])
    else:
        n_experts, field = cfg.integer("num_experts", d["num_experts"], minimum=0), "num_experts"
    step = cfg.integer("decoder_sparse_step", 1, minimum=1)
    only = cfg.get("mlp_only_layers", None) or []
    if not isinstance(only, list) or any(not isinstance(i, int) or isinstance(i, bool)
                                         or not 0 <= i < n_layers for i in only):
        raise cfg.refuse("mlp_only_layers", f"expected a list of layer indices in "
                         f"0..{n_layers - 1}, got {str(only)[:80]}")
    dense = [i for i in range(n_layers)
             if i in only or not n_experts or (i + 1) % step]
    hidden = cfg.integer("intermediate_size", d["intermediate_size"], minimum=1)
    if len(dense) == n_layers:  # no sparse layer: a dense model
        cfg.choose("ffn", "glu", "mlp_only_layers", "decoder_sparse_step", field)
        cfg.set("components.ffn.hidden", hidden, "intermediate_size")
        cfg.ignore("num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob",
                   "router_aux_loss_coef", "shared_expert_intermediate_size")
        return
    _experts(cfg, d, n_experts, field)
    if dense:
        rule = {**common.select_layers(dense, n_layers),
                "components": {"ffn": {"name": "glu", "hidden": hidden}}}
        cfg.set("layers", [*cfg.doc.get("layers", ()), rule], "mlp_only_layers",
                "decoder_sparse_step", "intermediate_size")
    else:
        cfg.ignore("intermediate_size")  # only dense layers have it


def _experts(cfg, d, n_experts, field):
    cfg.choose("ffn", "moe")
    cfg.set("components.ffn.n_experts", n_experts, field)
    cfg.set("components.ffn.top_k", cfg.integer(
        "num_experts_per_tok", d["num_experts_per_tok"], minimum=1), "num_experts_per_tok")
    cfg.set("components.ffn.hidden", cfg.integer(
        "moe_intermediate_size", d["moe_intermediate_size"], minimum=1), "moe_intermediate_size")
    if cfg.model_type in SHARED_EXPERT:
        cfg.set("components.ffn.n_shared", 1)
        cfg.set("components.ffn.shared_hidden", cfg.integer(
            "shared_expert_intermediate_size", d["shared_expert_intermediate_size"], minimum=1),
            "shared_expert_intermediate_size")
        cfg.set("components.ffn.shared_gate", True)
    renorm = cfg.flag("norm_topk_prob", False)
    cfg.set("components.ffn.router", "softmax_topk_renorm" if renorm else "softmax_topk",
            "norm_topk_prob")
    cfg.set("components.ffn.aux_loss_coef", cfg.number("router_aux_loss_coef", 0.001),
            "router_aux_loss_coef")
    cfg.set("components.ffn.z_loss_coef", 0.0)  # Qwen trains without a router z-loss
