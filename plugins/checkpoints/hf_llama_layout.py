"""Which Llama-family model_type can hold a spec, the config.json explorer writes for it, and
the check of a checkpoint's config.json against a spec.

The model_type follows from the spec: with ``ffn: moe``, qwen3_moe with ``qk_norm``, qwen2_moe
with a gated shared expert (or q/k/v biases but none on the output), else mixtral; without,
gemma2 with Gemma's switches (sandwich norms, RMSNorm's 1 + weight, scaled embeddings,
soft-capping), qwen3 with ``qk_norm``, qwen2 with q/k/v biases but none on the output, mistral
with a sliding window, else llama. The Qwen-MoE types may have dense ``glu`` layers among the
MoE ones (``mlp_only_layers``). A component parameter the chosen type cannot express, at a value
other than its default, is refused with its spec key. A checkpoint's config.json is checked
against the spec by :mod:`config_check` (every Hugging Face format's check).
"""

import json

from explorer.plugins.converters.common import HF_ACTIVATIONS

TITLES = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3",
          "mixtral": "Mixtral", "gemma2": "Gemma 2", "qwen2_moe": "Qwen2-MoE",
          "qwen3_moe": "Qwen3-MoE"}
TYPES = tuple(TITLES)
# Types read but never written: a Phi-3 spec is a Llama (or Mistral) one; only its checkpoints
# fuse q, k, v and gate, up (hf_llama splits them).
READ_ONLY = ("phi3",)
ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                 "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                 "mixtral": "MixtralForCausalLM", "gemma2": "Gemma2ForCausalLM",
                 "qwen2_moe": "Qwen2MoeForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM"}
# The types whose experts are Qwen-MoE's: dense layers may sit among the MoE ones.
QWEN_MOE = ("qwen2_moe", "qwen3_moe")

# The components the family is built of.
COMPONENTS = {"norm": ("rmsnorm",), "activation": tuple(HF_ACTIVATIONS), "ffn": ("glu", "moe"),
              "attention": ("gqa", "mha"), "positional": ("rope",),
              "residual": ("pre_norm", "sandwich"), "weight_tying": ("none", "tied")}
# The parameters each type can set to any value (the others only to their defaults; parameters
# that pick only how the same function is computed are always free).
_BASE = {"norm": {"eps"}, "ffn": {"hidden", "multiple_of"},
         "attention": {"n_kv_heads", "out_bias", "head_dim"},
         "positional": {"theta", "scaling", "factor", "original_context", "low_freq_factor",
                        "high_freq_factor", "beta_fast", "beta_slow", "truncate",
                        "attention_factor"}}
_WINDOW = {"attention": {"window"}}
_EXPERTS = {"ffn": {"n_experts", "top_k", "router", "aux_loss_coef", "z_loss_coef"}}
FREE = {
    "llama": [_BASE, {"ffn": {"bias"}}],
    "mistral": [_BASE, _WINDOW],
    "qwen2": [_BASE, _WINDOW],
    "qwen3": [_BASE, _WINDOW, {"attention": {"qk_norm"}}],
    "mixtral": [_BASE, _WINDOW, _EXPERTS],
    "qwen2_moe": [_BASE, _EXPERTS, {"ffn": {"n_shared", "shared_hidden", "shared_gate"}}],
    "qwen3_moe": [_BASE, _EXPERTS, {"attention": {"qk_norm"}}],
    "gemma2": [_BASE, _WINDOW, {"norm": {"unit_offset"}, "attention": {
        "softcap", "query_pre_attn_scalar"}}],
}
# Mixtral's routing (HF renormalises the top k; Mistral's softmax over the top k is the same);
# Qwen-MoE's renormalises with norm_topk_prob only.
MIXTRAL_ROUTERS = ("softmax_topk_renorm", "topk_softmax")
QWEN_MOE_ROUTERS = ("softmax_topk", *MIXTRAL_ROUTERS)
# The types whose config lists each layer's attention (layer_types): windows may differ by layer.
LAYER_TYPES = ("qwen2", "qwen3", "gemma2")
# rope scaling -> the keys of config.json's rope_scaling, each with its rope parameter.
ROPE_SCALING = {
    "linear": {"factor": "factor"},
    "llama3": {"factor": "factor", "low_freq_factor": "low_freq_factor",
               "high_freq_factor": "high_freq_factor",
               "original_max_position_embeddings": "original_context"},
    "yarn": {"factor": "factor", "original_max_position_embeddings": "original_context",
             "beta_fast": "beta_fast", "beta_slow": "beta_slow", "truncate": "truncate",
             "attention_factor": "attention_factor"},
}


class _Unsupported(Exception):
    def __init__(self, key, reason):
        super().__init__(key, reason)
        self.key, self.reason = key, reason


def _yaml(value):
    return value if isinstance(value, str) else json.dumps(value)


def choose(spec):
    """The model_type that holds ``spec``; raises _Unsupported with the key that rules all out."""
    c, m = spec.components, spec.model
    if m.width_multiplier != 1.0:
        raise _Unsupported("model.parametrization", "is mup away from its base width; the "
                           "Llama family has no output multiplier or 1/d attention")
    for kind, names in COMPONENTS.items():
        if c[kind].name not in names:
            raise _Unsupported(f"components.{kind}", f"is {c[kind].name}; the Llama family has "
                               f"only {' or '.join(names)}")
    att = c["attention"].params
    kind = _type_of(spec)
    _free_params(spec, FREE[kind], TITLES[kind])
    _layers(spec, kind)
    qkv, out = m.qkv_bias, att["out_bias"]
    if kind == "qwen2":
        return kind
    if kind == "qwen2_moe":
        if out:
            raise _Unsupported("components.attention.out_bias", "is true; Qwen2-MoE biases q, "
                               "k and v only")
        return kind
    if out != qkv:
        raise _Unsupported("components.attention.out_bias", f"is {_yaml(out)} with "
                           f"model.qkv_bias {_yaml(qkv)}; {TITLES[kind]} biases q, k, v and o "
                           "together (or o alone never: Qwen2 biases q, k, v only)")
    if qkv and kind in ("mistral", "mixtral"):
        raise _Unsupported("model.qkv_bias", f"is true; {TITLES[kind]} has no attention biases")
    return kind


def _type_of(spec):
    """The type the spec's distinctive features point to."""
    c, m = spec.components, spec.model
    att = c["attention"].params
    gemma = (c["residual"].name == "sandwich" or c["norm"].params.get("unit_offset")
             or att.get("softcap") or att.get("query_pre_attn_scalar") or m.scale_embeddings
             or m.logit_softcap)
    if gemma:
        _require_gemma2(spec)
        return "gemma2"
    if m.logit_softcap:
        raise _Unsupported("model.logit_softcap", "is set; only Gemma 2 caps the logits")
    if c["ffn"].name == "moe":
        return _moe_type(spec)
    if att.get("qk_norm"):
        return "qwen3"
    if m.qkv_bias and not att["out_bias"]:
        return "qwen2"
    return "mistral" if any(windows(spec)) else "llama"


def _moe_type(spec):
    """qwen3_moe for q/k norms, qwen2_moe for a gated shared expert or Qwen2's biases, else
    mixtral; each with the routing it computes."""
    c, m = spec.components, spec.model
    att, ffn = c["attention"].params, c["ffn"].params
    if att.get("qk_norm"):
        kind = "qwen3_moe"
    elif ffn["shared_gate"] or (m.qkv_bias and not att["out_bias"]):
        kind = "qwen2_moe"
        needs = "Qwen2-MoE has exactly one shared expert, gated (n_shared: 1, shared_gate: true)"
        if not ffn["shared_gate"]:
            raise _Unsupported("components.ffn.shared_gate", "is false with q/k/v biases and no "
                               f"output bias, which only Qwen2-MoE has; {needs}")
        if ffn["n_shared"] != 1:
            raise _Unsupported("components.ffn.n_shared", f"is {ffn['n_shared']}; {needs}")
    else:
        kind = "mixtral"
    routers = QWEN_MOE_ROUTERS if kind in QWEN_MOE else MIXTRAL_ROUTERS
    if ffn["router"] not in routers:
        raise _Unsupported("components.ffn.router", f"is {ffn['router']}; {TITLES[kind]} routes "
                           f"with {' or '.join(routers)}" + (
                               "" if kind in QWEN_MOE else " (Qwen2/3-MoE, with a gated shared "
                               "expert or qk_norm, also with softmax_topk)"))
    return kind


def dense_layers(spec):
    """The layers whose ffn is a dense glu among the MoE ones (Qwen-MoE's mlp_only_layers)."""
    if spec.components["ffn"].name != "moe":
        return []
    return [i for i, layer in enumerate(spec.layer_components()) if layer["ffn"].name == "glu"]


def windows(spec):
    """Each layer's sliding window (0: none)."""
    return [layer["attention"].params.get("window", 0) for layer in spec.layer_components()]


def _layers(spec, kind):
    """Layers may differ only in their sliding window (on or off, one size), and only where
    config.json lists each layer's attention; Qwen-MoE's also in dense glu layers of one size
    (intermediate_size, no biases) among the MoE ones."""
    wide = spec.components
    dense = set()
    for i, layer in enumerate(spec.layer_components()):
        for k, choice in layer.items():
            if k == "ffn" and kind in QWEN_MOE and choice.name == "glu":
                if choice.params["bias"]:
                    raise _Unsupported("layers", f"sets a glu with biases at layer {i}; "
                                       f"{TITLES[kind]}'s dense layers have none")
                dense.add(tuple(sorted(choice.params.items())))
                continue
            params = {p: v for p, v in choice.params.items() if p != "window"}
            base = {p: v for p, v in wide[k].params.items() if p != "window"}
            if choice.name != wide[k].name or params != base:
                raise _Unsupported("layers", f"sets components.{k} at layer {i} apart from the "
                                   f"window; the Llama family's layers differ in their sliding "
                                   "window only (Qwen-MoE's: also in dense glu layers among "
                                   "the moe ones)")
    if len(dense) > 1:
        raise _Unsupported("layers", f"sets dense glu layers of {len(dense)} kinds; config.json "
                           "has one intermediate_size")
    if dense and len(dense_layers(spec)) == spec.model.n_layers:
        raise _Unsupported("layers", "makes every layer a dense glu; write components.ffn: glu")
    sizes = set(windows(spec))
    if kind in QWEN_MOE and sizes != {0}:
        raise _Unsupported("layers", f"sets a sliding window; explorer writes {TITLES[kind]} "
                           "without one (use_sliding_window: false)")
    if len(sizes - {0}) > 1:
        raise _Unsupported("layers", f"sets windows of {len(sizes - {0})} sizes; config.json "
                           "has one sliding_window")
    if len(sizes) > 1 and kind not in LAYER_TYPES:
        raise _Unsupported("layers", f"windows some layers only; {TITLES[kind]}'s config "
                           f"windows every layer or none (only "
                           f"{', '.join(TITLES[t] for t in LAYER_TYPES)} list layer_types)")


def _require_gemma2(spec):
    """Gemma 2 always has its sandwich, 1 + weight norms and scaled embeddings."""
    c, m = spec.components, spec.model
    for key, ok, needs in (
            ("components.residual", c["residual"].name == "sandwich", "sandwich"),
            ("components.norm.unit_offset", c["norm"].params.get("unit_offset"), "true"),
            ("model.scale_embeddings", m.scale_embeddings, "true"),
            ("components.ffn", c["ffn"].name == "glu", "glu")):
        if not ok:
            raise _Unsupported(key, f"is not {needs}; of the Llama family only Gemma 2 has "
                               "Gemma's switches, and it always has " + needs)


def _free_params(spec, parts, title):
    """Refuse a component parameter at a value other than its default unless one of ``parts``
    ({kind: names}) frees it; ``title`` names the type in the message."""
    registry = spec.plugin_manager.registry() if spec.plugin_manager else None
    free = {}
    for part in parts:
        for k, names in part.items():
            free.setdefault(k, set()).update(names)
    for k, choice in spec.components.items():
        component = registry.component(k, choice.name) if registry else None
        for param in component.params if component else ():
            value = choice.params.get(param.name, param.default)
            if param.numerics_only or param.name in free.get(k, ()) or value == param.default:
                continue
            raise _Unsupported(f"components.{k}.{param.name}", f"is {_yaml(value)}; "
                               f"{title} has only {_yaml(param.default)}")


def unsupported(spec):
    """The first spec key no Llama-family type can express, as ``(key, reason)``, or None."""
    try:
        choose(spec)
    except _Unsupported as exc:
        return exc.key, exc.reason
    return None


def kind_of(spec):
    """The model_type that holds ``spec``, or None when none can."""
    try:
        return choose(spec)
    except _Unsupported:
        return None


def label(spec):
    """The type's name for messages ("Qwen3"), or "Llama family" for a spec none can hold."""
    kind = kind_of(spec)
    return TITLES[kind] if kind else "Llama family"


# -- config.json -----------------------------------------------------------------------------

def config(model, spec):
    """The config.json transformers builds the same model from."""
    kind = choose(spec)
    m, c = spec.model, spec.components
    att, ffn = c["attention"].params, c["ffn"].params
    block = model.trf_blocks[0]
    per_layer = windows(spec)
    window = max(per_layer) or None
    tied = model.out_head.weight is model.tok_emb.weight
    out = {
        "architectures": [ARCHITECTURES[kind]],
        "model_type": kind,
        "vocab_size": m.vocab_size,
        "hidden_size": m.emb_dim,
        "num_hidden_layers": m.n_layers,
        "num_attention_heads": m.n_heads,
        "num_key_value_heads": att.get("n_kv_heads", m.n_heads),  # mha: one per query head
        "head_dim": block.att.head_dim,
        ("hidden_activation" if kind == "gemma2" else "hidden_act"):
            HF_ACTIVATIONS[c["activation"].name],
        "max_position_embeddings": m.context_length,
        "rms_norm_eps": c["norm"].params["eps"],
        "rope_theta": c["positional"].params["theta"],
        "tie_word_embeddings": tied,
        "attention_dropout": m.dropout.attention,
    }
    if kind in QWEN_MOE:
        out.update(_qwen_experts(model, spec))
    else:
        out["intermediate_size"] = (block.ff.hidden if c["ffn"].name == "moe"
                                    else block.ff.proj.in_features)
    if kind == "qwen2_moe":
        out["qkv_bias"] = m.qkv_bias
    if kind in ("llama", "qwen3", "gemma2", "qwen3_moe"):
        out["attention_bias"] = m.qkv_bias
    if kind == "llama":
        out["mlp_bias"] = ffn["bias"]
    if kind in ("mistral", "mixtral"):
        out["sliding_window"] = window
    layer_types = ["sliding_attention" if w else "full_attention" for w in per_layer]
    if kind in ("qwen2", "qwen3"):
        out.update(use_sliding_window=bool(window), sliding_window=window,
                   max_window_layers=0 if window else m.n_layers, layer_types=layer_types)
    if kind == "mixtral":
        out.update(num_local_experts=ffn["n_experts"], num_experts_per_tok=ffn["top_k"],
                   router_aux_loss_coef=ffn["aux_loss_coef"], router_jitter_noise=0.0)
    if kind == "gemma2":
        out.update(query_pre_attn_scalar=att["query_pre_attn_scalar"] or block.att.head_dim,
                   attn_logit_softcapping=att["softcap"] or None,
                   final_logit_softcapping=m.logit_softcap or None,
                   sliding_window=window or 4096,  # transformers' default; unused without
                   layer_types=layer_types)
    rope = c["positional"].params
    if rope["scaling"] != "none":
        out["rope_scaling"] = {"rope_type": rope["scaling"], **{
            key: rope[param] for key, param in ROPE_SCALING[rope["scaling"]].items()}}
    return out


def _qwen_experts(model, spec):
    """Qwen-MoE's fields for the experts (their sizes and routing, Qwen2-MoE's shared expert)
    and for the dense layers (mlp_only_layers, and their intermediate_size if there are any);
    no sliding window."""
    ffn = spec.components["ffn"].params
    dense = dense_layers(spec)
    blocks = model.trf_blocks
    moe = next(b.ff for i, b in enumerate(blocks) if i not in dense)  # _layers: there is one
    out = {"num_experts": ffn["n_experts"], "num_experts_per_tok": ffn["top_k"],
           "moe_intermediate_size": moe.hidden,
           "norm_topk_prob": ffn["router"] != "softmax_topk",
           "router_aux_loss_coef": ffn["aux_loss_coef"], "decoder_sparse_step": 1,
           "mlp_only_layers": dense, "use_sliding_window": False}
    if dense:
        out["intermediate_size"] = blocks[dense[0]].ff.proj.in_features
    if moe.shared is not None:
        out["shared_expert_intermediate_size"] = moe.shared.proj.in_features
    return out
