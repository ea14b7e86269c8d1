"""The built-in mixture-of-experts feed-forward (implementation in layers/moe.py)."""

from explorer import Component, Param, ParamError, hookimpl

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
                      "activation (Mixtral: 8; DeepSeek-V2: 160)", min=1),
                Param("top_k", int, 2, "routed experts per token, 1..n_experts (Mixtral: 2; "
                      "DeepSeek-V2: 6)", min=1),
                Param("n_shared", int, 0, "always-on shared experts of the same size, which "
                      "see every token (DeepSeekMoE: 2)", min=0),
                Param("hidden", int, 0, "hidden size of each expert; 0 = the dense glu rule: "
                      "int(8 * emb_dim / 3) rounded up to multiple_of, each expert the size of "
                      "the FFN it replaces (Mixtral 8x7B: 14336; DeepSeek-V2: 1536)", min=0),
                Param("multiple_of", int, 256, "the automatic hidden size is rounded up to a "
                      "multiple of this; ignored when hidden > 0", min=1),
                Param("router", str, "softmax_topk_renorm", ROUTER_HELP,
                      choices=("softmax_topk", "softmax_topk_renorm", "topk_softmax")),
                Param("routed_scaling", float, 1.0, "multiplies the routed experts' weights "
                      "(DeepSeek's routed_scaling_factor: V2 16.0, V3 2.5)", min=0, exclusive_min=True),
                Param("aux_loss_coef", float, 0.01, "weight of the load-balancing loss "
                      "n_experts * sum_i f_i * P_i in training (Switch Transformer, ST-MoE: "
                      "0.01; HF Mixtral's router_aux_loss_coef: 0.001)", min=0),
                Param("z_loss_coef", float, 0.001, "weight of the router z-loss "
                      "mean(logsumexp(router logits)^2) in training (ST-MoE: 0.001)", min=0),
                Param("bias", bool, False, "biases on the experts' linear layers (Mixtral, "
                      "DeepSeek: none)"),
            ),
            check=top_k_within_experts,
            description="Mixture of experts: a router sends each token to its top-k gated "
                        "FFNs, plus always-on shared experts (Mixtral, DeepSeekMoE).",
        ),
    ]


def top_k_within_experts(config, params):
    """A token cannot use more experts than there are."""
    if params["top_k"] > params["n_experts"]:
        raise ParamError("top_k", f"must be in 1..n_experts ({params['n_experts']}), got "
                         f"{params['top_k']}", "the experts each token uses, e.g. 2 (Mixtral), "
                         "6 (DeepSeek-V2)")
