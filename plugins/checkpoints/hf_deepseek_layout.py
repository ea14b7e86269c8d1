"""Which specs the Hugging Face DeepSeek layout holds, and the config.json explorer writes.

DeepSeek-V2 and V3 share one layout: latent attention (``mla``) in every layer, RMSNorm,
pre-norm, rope, a gated FFN (``glu``) in the first ``first_k_dense_replace`` layers and routed
plus shared experts (``moe``) in the rest. The routing picks the type: V3 routes with a sigmoid,
a score-correction bias and groups ranked by the sum of their two best scores; V2 with a softmax
(greedy, or by groups ranked by their best), never renormalising the top k. A spec neither can
express is refused with its spec key. A checkpoint's config.json is checked as the Llama
family's is (:func:`config_check.check`: converted by the registered converter, compared key
by key as the built models have each value).
"""

import math

from explorer.plugins.converters.common import HF_ACTIVATIONS

from .hf_llama_layout import ROPE_SCALING, _free_params, _Unsupported, _yaml

TITLES = {"deepseek_v2": "DeepSeek-V2", "deepseek_v3": "DeepSeek-V3"}
TYPES = tuple(TITLES)
ARCHITECTURES = {"deepseek_v2": "DeepseekV2ForCausalLM", "deepseek_v3": "DeepseekV3ForCausalLM"}

COMPONENTS = {"norm": ("rmsnorm",), "activation": tuple(HF_ACTIVATIONS), "ffn": ("glu", "moe"),
              "attention": ("mla",), "positional": ("rope",), "residual": ("pre_norm",),
              "weight_tying": ("none", "tied")}
# The parameters the layout can set to any value (the others only to their defaults).
FREE = [{"norm": {"eps"},
         "ffn": {"hidden", "multiple_of", "n_experts", "top_k", "n_shared", "router", "n_groups",
                 "topk_groups", "group_score", "score_bias", "routed_scaling", "aux_loss_coef",
                 "z_loss_coef"},
         "attention": {"kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
                       "v_head_dim", "out_bias", "score_scale"},
         "positional": {"theta", "scaling", "factor", "original_context", "low_freq_factor",
                        "high_freq_factor", "beta_fast", "beta_slow", "truncate",
                        "attention_factor"}}]
# What each type's router computes: router, score_bias, group_score (None: any, no groups).
ROUTING = {"deepseek_v2": {"softmax_topk": (False, "max")},
           "deepseek_v3": {"sigmoid_topk": (True, "top2_sum"),
                           "sigmoid_topk_renorm": (True, "top2_sum")}}


def choose(spec):
    """The model_type that holds ``spec``; raises _Unsupported with the key that rules both out."""
    if spec.model.width_multiplier != 1.0:
        raise _Unsupported("model.parametrization", "is mup away from its base width; DeepSeek "
                           "has no output multiplier or 1/d attention")
    for kind, names in COMPONENTS.items():
        name = spec.components[kind].name
        if name not in names:
            raise _Unsupported(f"components.{kind}", f"is {name}; DeepSeek has only "
                               f"{' or '.join(names)}")
    m = spec.model
    for key, value in (("model.scale_embeddings", m.scale_embeddings),
                       ("model.logit_softcap", m.logit_softcap)):
        if value:
            raise _Unsupported(key, f"is {_yaml(value)}; DeepSeek has none")
    _free_params(spec, FREE, "DeepSeek")
    moe = _layers(spec)
    kind = "deepseek_v2"
    if moe is not None:
        routers = [t for t, routes in ROUTING.items() if moe.params["router"] in routes]
        if not routers:
            raise _Unsupported("components.ffn.router", f"is {moe.params['router']}; DeepSeek "
                               "routes with softmax_topk (V2) or sigmoid_topk[_renorm] (V3)")
        kind = routers[0]
        _routing(moe.params, kind)
    _attention(spec)
    return kind


def _layers(spec):
    """Layers may differ in their FFN only: glu in the first k, moe in the rest, each alike.
    Returns the moe choice (None when every layer is dense)."""
    layers = spec.layer_components()
    names = [layer["ffn"].name for layer in layers]
    k = names.count("glu")
    if names != ["glu"] * k + ["moe"] * (len(names) - k):
        raise _Unsupported("layers", "puts glu after moe; DeepSeek's first "
                           "first_k_dense_replace layers are dense, the rest experts")
    if k and layers[0]["ffn"].params["bias"]:
        raise _Unsupported("layers", "sets a glu with biases; DeepSeek's dense layers have none")
    for i, layer in enumerate(layers):
        first = layers[0 if i < k else k]
        for kind, choice in layer.items():
            wide = first[kind] if kind == "ffn" else spec.components[kind]
            if (choice.name, choice.params) != (wide.name, wide.params):
                raise _Unsupported("layers", f"sets components.{kind} at layer {i} apart from "
                                   "the others; DeepSeek's layers differ only in dense or experts")
    return layers[k]["ffn"] if k < len(layers) else None


def _routing(params, kind):
    score_bias, group_score = ROUTING[kind][params["router"]]
    if params["score_bias"] != score_bias:
        raise _Unsupported("components.ffn.score_bias", f"is {_yaml(params['score_bias'])}; "
                           f"{TITLES[kind]} routes with it {_yaml(score_bias)}")
    if kind == "deepseek_v3" or params["n_groups"] > 1:
        if params["group_score"] != group_score:
            raise _Unsupported("components.ffn.group_score", f"is {params['group_score']}; "
                               f"{TITLES[kind]} ranks groups by {group_score}")
    if params["n_shared"] < 1:
        raise _Unsupported("components.ffn.n_shared", "is 0; DeepSeek always has shared experts")


def _attention(spec):
    """attention_bias biases q_a_proj, kv_a_proj_with_mqa and o_proj, never q_proj; YaRN's
    mscale_all_dim is the one way config.json scales the scores."""
    att, qkv = spec.components["attention"].params, spec.model.qkv_bias
    if att["out_bias"] != qkv:
        raise _Unsupported("components.attention.out_bias", f"is {_yaml(att['out_bias'])} with "
                           f"model.qkv_bias {_yaml(qkv)}; DeepSeek's attention_bias biases the "
                           "input and output projections together")
    if qkv and not att["q_lora_rank"]:
        raise _Unsupported("model.qkv_bias", "is true with q_lora_rank 0; DeepSeek's q_proj has "
                           "no bias")
    rope = spec.components["positional"].params
    if att["score_scale"] != 1.0 and (rope["scaling"] != "yarn" or rope["factor"] <= 1):
        raise _Unsupported("components.attention.score_scale", f"is {att['score_scale']}; "
                           "DeepSeek scales the scores only through yarn's mscale_all_dim "
                           "(positional scaling yarn, factor > 1)")


def unsupported(spec):
    """The first spec key neither DeepSeek type can express, as ``(key, reason)``, or None."""
    try:
        choose(spec)
    except _Unsupported as exc:
        return exc.key, exc.reason
    return None


# -- config.json -----------------------------------------------------------------------------

def config(model, spec):
    """The config.json transformers builds the same model from."""
    kind = choose(spec)
    m, c = spec.model, spec.components
    att, rope = c["attention"].params, c["positional"].params
    layers = spec.layer_components()
    k = sum(layer["ffn"].name == "glu" for layer in layers)
    out = {
        "architectures": [ARCHITECTURES[kind]],
        "model_type": kind,
        "vocab_size": m.vocab_size,
        "hidden_size": m.emb_dim,
        "num_hidden_layers": m.n_layers,
        "num_attention_heads": m.n_heads,
        "num_key_value_heads": m.n_heads,  # the latent expands a key and value per query head
        "hidden_act": HF_ACTIVATIONS[c["activation"].name],
        "max_position_embeddings": m.context_length,
        "rms_norm_eps": c["norm"].params["eps"],
        "rope_theta": rope["theta"],
        "tie_word_embeddings": model.out_head.weight is model.tok_emb.weight,
        "attention_bias": m.qkv_bias,
        "attention_dropout": m.dropout.attention,
        "q_lora_rank": att["q_lora_rank"] or None,
        **{key: att[key] for key in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
                                     "v_head_dim")},
        "first_k_dense_replace": k,
        "moe_layer_freq": 1,
    }
    if k:
        out["intermediate_size"] = model.trf_blocks[0].ff.hidden
    if k < len(layers):
        out.update(_experts(layers[k]["ffn"].params, model.trf_blocks[k].ff.hidden, kind))
    else:  # every layer dense: transformers builds no experts, but the fields must be there
        out.update(n_routed_experts=1, num_experts_per_tok=1, n_shared_experts=1,
                   moe_intermediate_size=out["intermediate_size"], topk_method="greedy")
    if rope["scaling"] != "none":
        out["rope_scaling"] = {"rope_type": rope["scaling"], **{
            key: rope[param] for key, param in ROPE_SCALING[rope["scaling"]].items()}}
    if att["score_scale"] != 1.0:  # (0.1 * mscale_all_dim * ln(factor) + 1)^2, solved
        out["rope_scaling"]["mscale_all_dim"] = ((math.sqrt(att["score_scale"]) - 1)
                                                 / (0.1 * math.log(rope["factor"])))
    if kind == "deepseek_v3":
        out["rope_interleave"] = True  # the rope rows are written in interleaved pairs
    return out


def _experts(ffn, hidden, kind):
    grouped = kind == "deepseek_v3" or ffn["n_groups"] > 1
    return {
        "n_routed_experts": ffn["n_experts"],
        "num_experts_per_tok": ffn["top_k"],
        "n_shared_experts": ffn["n_shared"],
        "moe_intermediate_size": hidden,
        "routed_scaling_factor": ffn["routed_scaling"],
        "scoring_func": "sigmoid" if kind == "deepseek_v3" else "softmax",
        "topk_method": ("noaux_tc" if kind == "deepseek_v3"
                        else "group_limited_greedy" if grouped else "greedy"),
        "norm_topk_prob": ffn["router"].endswith("_renorm"),
        "n_group": ffn["n_groups"] if grouped else None,
        "topk_group": ffn["topk_groups"] if grouped else None,
    }
