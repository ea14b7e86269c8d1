"""Built-in feed-forward components: mlp and glu (mlp.py beside this), the mixture of experts
(moe.py), and ``none`` (absent.py: a block that is its token mixer alone)."""

from explorer import Component, Param, ParamError, hookimpl

_LAYERS = "explorer.plugins.ffn.mlp"


ROUTER_HELP = (
    "the weights of a token's top-k experts: softmax_topk = softmax over all experts, then the "
    "top k as they are (Switch, DeepSeek-V2); softmax_topk_renorm = those renormalised to sum 1 "
    "(HF Mixtral, Qwen-MoE norm_topk_prob); topk_softmax = softmax over the top-k logits "
    "(Mistral's Mixtral), mathematically equal to softmax_topk_renorm; sigmoid_topk and "
    "sigmoid_topk_renorm = a sigmoid per expert instead of a softmax (DeepSeek-V3: renorm)")
ROUTERS = ("softmax_topk", "softmax_topk_renorm", "topk_softmax", "sigmoid_topk",
           "sigmoid_topk_renorm")


@hookimpl
def explorer_components():
    return [
        Component(
            kind="ffn", name="mlp", factory=f"{_LAYERS}:MLP",
            params=(
                Param("expansion", int, 4, "hidden size = expansion * emb_dim", min=1),
                Param("bias", bool, True, "biases on both linear layers"),
                Param("hidden", int, 0, "the hidden size itself, when it is no multiple of "
                      "emb_dim (Nemotron-H-8B: 21504 at width 4096); 0 = expansion * emb_dim",
                      min=0),
            ),
            description="Linear -> activation -> Linear, the book's FeedForward.",
        ),
        Component(
            kind="ffn", name="glu", factory=f"{_LAYERS}:GLU",
            params=(
                Param("hidden", int, 0, "hidden size f; 0 = Llama's rule: int(2 * 4 * emb_dim "
                      "/ 3) rounded up to a multiple of multiple_of (768 -> 2048, 4096 -> 11008)",
                      min=0),
                Param("multiple_of", int, 256, "the automatic hidden size is rounded up to a "
                      "multiple of this (Llama: 256); ignored when hidden > 0", min=1),
                Param("bias", bool, False, "biases on all three linear layers (Llama: none)"),
            ),
            description="Gated FFN proj(act(fc_1(x)) * fc_2(x)): SwiGLU with silu, GeGLU with "
                        "gelu, ReGLU with relu; hidden 0 = int(8h/3) rounded up to multiple_of.",
        ),
        Component(
            kind="ffn", name="moe", factory="explorer.plugins.ffn.moe:MixtureOfExperts",
            params=(
                Param("n_experts", int, 8, "routed experts, each a gated FFN with the spec's "
                      "activation (Mixtral: 8; DeepSeek-V2: 160)", min=1),
                Param("top_k", int, 2, "routed experts per token, 1..n_experts (Mixtral: 2; "
                      "DeepSeek-V2: 6)", min=1),
                Param("n_shared", int, 0, "always-on shared experts, which see every token "
                      "(DeepSeekMoE: 2; Qwen2-MoE: 1)", min=0),
                Param("shared_hidden", int, 0, "hidden size of each shared expert; 0 = the "
                      "routed experts' hidden (DeepSeek); Qwen2-MoE's "
                      "shared_expert_intermediate_size (Qwen1.5-MoE-A2.7B: 5632)", min=0),
                Param("shared_gate", bool, False, "scale the shared experts' output per token "
                      "by sigmoid(a Linear emb_dim -> 1): Qwen2-MoE's shared_expert_gate"),
                Param("hidden", int, 0, "hidden size of each expert; 0 = the dense glu rule: "
                      "int(8 * emb_dim / 3) rounded up to multiple_of, each expert the size of "
                      "the FFN it replaces (Mixtral 8x7B: 14336; DeepSeek-V2: 1536)", min=0),
                Param("multiple_of", int, 256, "the automatic hidden size is rounded up to a "
                      "multiple of this; ignored when hidden > 0", min=1),
                Param("router", str, "softmax_topk_renorm", ROUTER_HELP, choices=ROUTERS),
                Param("n_groups", int, 1, "split the experts into this many groups of equal "
                      "size and let each token choose only within its topk_groups best groups "
                      "(DeepSeek-V2: 8, V3: 8); 1 = no groups", min=1),
                Param("topk_groups", int, 1, "the groups a token may choose from, 1..n_groups "
                      "(DeepSeek-V2: 3, V3: 4)", min=1),
                Param("group_score", str, "max", "how a group is ranked: max = its best "
                      "expert's score (DeepSeek-V2's group_limited_greedy); top2_sum = the sum "
                      "of its two best (DeepSeek-V3's noaux_tc)", choices=("max", "top2_sum")),
                Param("score_bias", bool, False, "a per-expert bias added to the scores when "
                      "choosing the experts but not to their weights: DeepSeek-V3's "
                      "e_score_correction_bias for balancing without an auxiliary loss (a "
                      "buffer, adjusted outside gradient descent)"),
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
            check=check,
            description="Mixture of experts: a router sends each token to its top-k gated "
                        "FFNs, plus always-on shared experts (Mixtral, DeepSeekMoE, Qwen-MoE).",
        ),
        Component(
            kind="ffn", name="none", factory="explorer.plugins.ffn.absent:NoFeedForward",
            description="No feed-forward: the block is its token mixer alone (Mamba-2, "
                        "Nemotron-H's Mamba and attention layers), with no norm for it.",
        ),
    ]


def check(config, params):
    routing_is_possible(params)
    shared_experts_are_possible(params)


def shared_experts_are_possible(params):
    """The shared experts' size and gate describe shared experts that exist."""
    if params["n_shared"]:
        return
    for name, value in (("shared_hidden", params["shared_hidden"]),
                        ("shared_gate", params["shared_gate"])):
        if value:
            raise ParamError(name, f"is {str(value).lower()} but n_shared is 0: there is no "
                             "shared expert", "n_shared: 1 or more (Qwen2-MoE: 1), or leave "
                             f"{name} out")


def routing_is_possible(params):
    """A token cannot use more experts than there are, nor more than its groups hold."""
    n, k, groups, chosen = (params["n_experts"], params["top_k"], params["n_groups"],
                            params["topk_groups"])
    if k > n:
        raise ParamError("top_k", f"must be in 1..n_experts ({n}), got {k}", "the experts each "
                         "token uses, e.g. 2 (Mixtral), 6 (DeepSeek-V2)")
    if n % groups:
        raise ParamError("n_groups", f"{groups} groups cannot share n_experts {n} equally",
                         "a divisor of n_experts")
    if chosen > groups:
        raise ParamError("topk_groups", f"must be in 1..n_groups ({groups}), got {chosen}")
    if k > chosen * (n // groups):
        raise ParamError("top_k", f"{k} experts cannot come from topk_groups {chosen} groups "
                         f"of {n // groups}", "more topk_groups, or a smaller top_k")
    if groups > 1 and params["group_score"] == "top2_sum" and n // groups < 2:
        raise ParamError("group_score", f"top2_sum needs groups of 2 experts or more; "
                         f"n_experts {n} / n_groups {groups} = {n // groups}", "max")
    if params["router"] == "topk_softmax" and (groups > 1 or params["score_bias"]):
        raise ParamError("router", "topk_softmax ranks the raw logits: it has no groups and "
                         "no score bias", "softmax_topk_renorm, which computes the same")
