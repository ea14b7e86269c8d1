"""The built-in mixture-of-experts feed-forward (implementation in layers/moe.py)."""

import math

from explorer import Component, Param, hookimpl

ROUTER_HELP = (
    "the weights of a token's top-k experts: softmax_topk = softmax over all experts, then the "
    "top k as they are (Switch, DeepSeek-V2); softmax_topk_renorm = those renormalised to sum 1 "
    "(HF Mixtral, Qwen-MoE norm_topk_prob); topk_softmax = softmax over the top-k logits "
    "(Mistral's Mixtral), mathematically equal to softmax_topk_renorm")


@hookimpl
def explorer_components():
    return [
        Component(
            kind="ffn", name="moe", factory="explorer.plugins.layers.moe:MixtureOfExperts",
            params=(
                Param("n_experts", int, 8, "routed experts, each a gated FFN with the spec's "
                      "activation (Mixtral: 8; DeepSeek-V2: 160)"),
                Param("top_k", int, 2, "routed experts per token, 1..n_experts (Mixtral: 2; "
                      "DeepSeek-V2: 6)"),
                Param("n_shared", int, 0, "always-on shared experts of the same size, which "
                      "see every token (DeepSeekMoE: 2)"),
                Param("hidden", int, 0, "hidden size of each expert; 0 = the dense glu rule: "
                      "int(8 * emb_dim / 3) rounded up to multiple_of, each expert the size of "
                      "the FFN it replaces (Mixtral 8x7B: 14336; DeepSeek-V2: 1536)"),
                Param("multiple_of", int, 256, "the automatic hidden size is rounded up to a "
                      "multiple of this; ignored when hidden > 0"),
                Param("router", str, "softmax_topk_renorm", ROUTER_HELP,
                      choices=("softmax_topk", "softmax_topk_renorm", "topk_softmax")),
                Param("routed_scaling", float, 1.0, "multiplies the routed experts' weights "
                      "(DeepSeek's routed_scaling_factor: V2 16.0, V3 2.5)"),
                Param("aux_loss_coef", float, 0.01, "weight of the load-balancing loss "
                      "n_experts * sum_i f_i * P_i in training (Switch Transformer, ST-MoE: "
                      "0.01; HF Mixtral's router_aux_loss_coef: 0.001)"),
                Param("z_loss_coef", float, 0.001, "weight of the router z-loss "
                      "mean(logsumexp(router logits)^2) in training (ST-MoE: 0.001)"),
                Param("bias", bool, False, "biases on the experts' linear layers (Mixtral, "
                      "DeepSeek: none)"),
            ),
            description="Mixture of experts: a router sends each token to its top-k gated "
                        "FFNs, plus always-on shared experts (Mixtral, DeepSeekMoE).",
        ),
    ]


def moe_problem(params):
    """What the Param types cannot judge (ranges, top_k <= n_experts), for a spec's moe params:
    ``(param, what is wrong, what would be valid)``, or None. Torch-free, so validation may call
    it when the spec loads; the factory calls it before building anything."""
    n_experts, top_k = params["n_experts"], params["top_k"]
    if n_experts < 1:
        return "n_experts", f"must be >= 1, got {n_experts}", "e.g. 8 (Mixtral), 64 (DeepSeek-V2)"
    if not 1 <= top_k <= n_experts:
        return ("top_k", f"must be in 1..n_experts ({n_experts}), got {top_k}",
                "the experts each token uses, e.g. 2 (Mixtral), 6 (DeepSeek-V2)")
    if params["n_shared"] < 0:
        return ("n_shared", f"must be >= 0, got {params['n_shared']}",
                "0 for none, e.g. 2 (DeepSeek-V2)")
    if not 0 < params["routed_scaling"] < math.inf:
        return ("routed_scaling", f"must be > 0, got {params['routed_scaling']}",
                "1.0 for none, e.g. 16.0 (DeepSeek-V2)")
    for name in ("aux_loss_coef", "z_loss_coef"):
        if not 0 <= params[name] < math.inf:
            return name, f"must be >= 0, got {params[name]}", "0 to leave the loss out of training"
    return None
