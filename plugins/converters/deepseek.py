"""DeepSeek-V2 and V3 configs -> multi-head latent attention (``mla``), RMSNorm, and a mixture
of routed and shared experts (``moe``) after ``first_k_dense_replace`` dense layers.

V2 routes with a softmax (greedy, or group_limited_greedy: groups ranked by their best score);
V3 with a sigmoid, a score-correction bias and groups ranked by the sum of their two best scores
(noaux_tc), the top k renormalised. Transformers' DeepSeek RoPE rotates interleaved pairs where
explorer's rotates halves: the same model up to a fixed permutation of the rope rows of the
weights (which the hf-deepseek checkpoint format applies), so the spec is the same.
"""

from . import common

# transformers' defaults where V2 and V3 differ.
DEFAULTS = {
    "deepseek_v2": {"q_lora_rank": 1536, "first_k_dense_replace": 0, "n_group": None,
                    "topk_group": None, "norm_topk_prob": False, "routed_scaling_factor": 1.0,
                    "n_shared_experts": 2, "n_routed_experts": 64, "num_experts_per_tok": None,
                    "moe_intermediate_size": 1407, "max_position_embeddings": 2048,
                    "topk_method": "greedy", "scoring_func": "softmax"},
    "deepseek_v3": {"q_lora_rank": 1536, "first_k_dense_replace": 3, "n_group": 8,
                    "topk_group": 4, "norm_topk_prob": True, "routed_scaling_factor": 2.5,
                    "n_shared_experts": 1, "n_routed_experts": 256, "num_experts_per_tok": 8,
                    "moe_intermediate_size": 2048, "max_position_embeddings": 4096,
                    "topk_method": "noaux_tc", "scoring_func": "sigmoid"},
}
# What each version's transformers code computes (the published configs name it too).
ROUTING = {"deepseek_v2": {"scoring_func": ("softmax",),
                           "topk_method": ("greedy", "group_limited_greedy")},
           "deepseek_v3": {"scoring_func": ("sigmoid",), "topk_method": ("noaux_tc",)}}


def convert(cfg):
    d = DEFAULTS[cfg.model_type]
    common.sizes(cfg, context_default=d["max_position_embeddings"])
    common.rmsnorm(cfg, 1e-6)
    common.activation(cfg, "hidden_act", "silu")
    _attention(cfg, d)
    scaling = common.rope(cfg, 10000.0)
    # transformers' DeepSeek multiplies the scores' scale by mscale(factor, mscale_all_dim)^2
    # under any rope scaling (yarn_apply_mscale).
    if scaling.get("mscale_all_dim"):
        factor = cfg.doc["components"]["positional"]["factor"]
        cfg.set("components.attention.score_scale",
                common.yarn_mscale(factor, scaling["mscale_all_dim"]) ** 2, "rope_scaling")
    cfg.set("components.residual", "pre_norm")
    common.tying(cfg, False)
    common.attention_dropout(cfg)
    if cfg.flag("mlp_bias", False):
        raise cfg.refuse("mlp_bias", "true: DeepSeek's experts have no biases in transformers",
                         "false")
    cfg.ignore("head_dim")  # transformers 5 derives it: qk_rope_head_dim
    _experts(cfg, d)


def _attention(cfg, d):
    cfg.choose("attention", "mla")
    for field, param, default in (("kv_lora_rank", "kv_lora_rank", 512),
                                  ("qk_nope_head_dim", "qk_nope_head_dim", 128),
                                  ("qk_rope_head_dim", "qk_rope_head_dim", 64),
                                  ("v_head_dim", "v_head_dim", 128)):
        cfg.set(f"components.attention.{param}", cfg.integer(field, default, minimum=1), field)
    cfg.set("components.attention.q_lora_rank", cfg.integer("q_lora_rank", d["q_lora_rank"]) or 0,
            "q_lora_rank")
    qk = cfg.integer("qk_head_dim", None)  # transformers 5 writes the sum it derives
    attention = cfg.doc["components"]["attention"]
    if qk is not None and qk != attention["qk_nope_head_dim"] + attention["qk_rope_head_dim"]:
        raise cfg.refuse("qk_head_dim", f"{qk} is not qk_nope_head_dim + qk_rope_head_dim")
    common.attention_bias(cfg)
    # Latent attention expands a key and value for every query head whatever this says
    # (transformers' DeepSeek-V3 defaults it to 128 at any head count); which pairs RoPE rotates
    # is a permutation of the weights' rope rows, the same function.
    cfg.ignore("num_key_value_heads", "rope_interleave")


def _experts(cfg, d):
    routing = ROUTING[cfg.model_type]
    for field, allowed in routing.items():
        value = cfg.text(field, d[field])
        if value not in allowed:
            raise cfg.refuse(field, f"{value!r}: transformers' {cfg.model_type} computes "
                             f"{' or '.join(allowed)}")
    if cfg.integer("moe_layer_freq", 1) != 1:
        raise cfg.refuse("moe_layer_freq", "other than 1: transformers puts experts in every "
                         "layer after first_k_dense_replace", "1")
    cfg.choose("ffn", "moe")
    top_k = cfg.integer("num_experts_per_tok", d["num_experts_per_tok"], minimum=1)
    if top_k is None:
        raise cfg.refuse("num_experts_per_tok", "missing", "the routed experts per token, e.g. 6")
    for field, param in (("n_routed_experts", "n_experts"), ("n_shared_experts", "n_shared"),
                         ("moe_intermediate_size", "hidden")):
        cfg.set(f"components.ffn.{param}", cfg.integer(field, d[field], minimum=0), field)
    cfg.set("components.ffn.top_k", top_k, "num_experts_per_tok")
    cfg.set("components.ffn.routed_scaling", cfg.number("routed_scaling_factor",
                                                        d["routed_scaling_factor"]),
            "routed_scaling_factor")
    v3 = cfg.model_type == "deepseek_v3"
    renorm = cfg.flag("norm_topk_prob", d["norm_topk_prob"])
    if renorm and not v3:
        raise cfg.refuse("norm_topk_prob", "true: transformers' DeepSeek-V2 never renormalises "
                         "the top k", "false")
    cfg.set("components.ffn.router", ("sigmoid_topk" if v3 else "softmax_topk")
            + ("_renorm" if renorm else ""), "scoring_func", "norm_topk_prob")
    grouped = v3 or cfg.data.get("topk_method", d["topk_method"]) == "group_limited_greedy"
    if grouped:
        cfg.set("components.ffn.n_groups", cfg.integer("n_group", d["n_group"], minimum=1),
                "n_group")
        cfg.set("components.ffn.topk_groups", cfg.integer("topk_group", d["topk_group"],
                                                          minimum=1), "topk_group")
        cfg.set("components.ffn.group_score", "top2_sum" if v3 else "max", "topk_method")
    else:
        cfg.ignore("n_group", "topk_group")  # greedy routing has no groups
    if v3:
        cfg.set("components.ffn.score_bias", True, "topk_method")
    # Training-only: DeepSeek balances with aux_loss_alpha (ignored); no z-loss.
    cfg.set("components.ffn.z_loss_coef", 0.0)
    cfg.set("components.ffn.aux_loss_coef", 0.0)
    dense = cfg.integer("first_k_dense_replace", d["first_k_dense_replace"], minimum=0)
    n_layers = cfg.doc["model"]["n_layers"]
    if dense:
        rule = {**common.select_layers(range(min(dense, n_layers)), n_layers),
                "components": {"ffn": {"name": "glu", "hidden": cfg.integer(
                    "intermediate_size", minimum=1)}}}
        cfg.set("layers", [*cfg.doc.get("layers", ()), rule], "first_k_dense_replace",
                "intermediate_size")
    else:
        cfg.ignore("intermediate_size")
