"""Mamba-2 and Nemotron-H configs -> the ``mamba2`` mixer in blocks of one sublayer.

Both are stacks of layers that each normalise (RMSNorm) and add one sublayer to the shortcut:
a block whose other sublayer is ``none`` (no parameters, no norm). Mamba-2 (transformers'
``Mamba2ForCausalLM``) has the SSD mixer in every layer: ``attention: mamba2``, ``ffn: none``.
Nemotron-H (``NemotronHForCausalLM``) names each layer's sublayer in ``layers_block_type`` (or
the older ``hybrid_override_pattern``, one letter a layer): ``linear_attention`` (M) the
mixer, ``full_attention`` (*) grouped-query attention without positions, ``mlp`` (-) an
up/down MLP (``attention: none``); its mixture-of-experts layers (E) are refused. Neither has
positions (transformers applies no RoPE), so ``positional: none``. Defaults are transformers'
config classes'.

Why Nemotron-H for the hybrid (rather than Granite-4.0-H): its layers are explorer's blocks with
one sublayer absent, and nothing else; Granite's hybrid adds μP-style multipliers on the
embeddings, the residual branches, the attention scores and the logits that explorer's blocks
do not have. Mamba-2 has no context limit; the spec gets ``CONTEXT`` (Mamba-2's training
length) unless the config names one.
"""

import math

from . import common

CONTEXT = 2048
# Nemotron-H's one-letter layer names (hybrid_override_pattern).
PATTERN = {"M": "linear_attention", "*": "full_attention", "-": "mlp", "E": "moe"}


def convert_mamba2(cfg):
    common.sizes(cfg, heads="num_heads", context_default=CONTEXT)
    common.rmsnorm(cfg, 1e-5, field="layer_norm_epsilon")
    cfg.choose("activation", "silu")
    cfg.choose("positional", "none")
    cfg.set("components.residual", "pre_norm")
    cfg.choose("ffn", "none")
    common.tying(cfg, False)
    mixer(cfg, heads="num_heads", head_dim="head_dim", state="state_size", bias="use_bias",
          act="hidden_act", chunk_default=256)
    types = cfg.get("layer_types")  # transformers 5 writes one per layer
    if types is not None and any(t != "mamba" for t in types):
        raise cfg.refuse("layer_types", f"{str(types)[:60]}: Mamba-2's layers are all mamba")


def mixer(cfg, heads, head_dim, state, bias, act, chunk_default, aliases=None):
    """``attention: mamba2`` from the config's Mamba fields (named as this model type names
    them; ``aliases`` maps a field to its older name, read when the newer is absent)."""
    def field(name):
        old = (aliases or {}).get(name)
        return old if old and name not in cfg.data and old in cfg.data else name

    cfg.choose("attention", "mamba2")
    if cfg.text(act, "silu") != "silu":
        raise cfg.refuse(act, f"{cfg.data[act]!r}: explorer's mamba2 convolves with silu, as "
                         "every published Mamba-2 does", "silu")
    emb = cfg.doc["model"]["emb_dim"]
    n_heads = cfg.integer(heads, 128, minimum=1)
    size = cfg.integer(head_dim, 64, minimum=1)
    expand = cfg.integer(field("expand"), 2, minimum=1)
    if cfg.model_type == "mamba2" and n_heads * size != expand * emb:
        raise cfg.refuse(heads, f"{n_heads} heads of {size} are not expand * hidden_size = "
                         f"{expand * emb}, the width transformers' Mamba-2 splits into heads")
    cfg.set("components.attention.heads", n_heads, heads)
    cfg.set("components.attention.head_dim", size, head_dim)
    cfg.set("components.attention.d_state", cfg.integer(state, 128, minimum=1), state)
    groups = cfg.integer(field("n_groups"), 8, minimum=1)
    if n_heads % groups:
        raise cfg.refuse(field("n_groups"), f"{groups} groups cannot share {n_heads} heads")
    cfg.set("components.attention.n_groups", groups, field("n_groups"))
    cfg.set("components.attention.conv_kernel", cfg.integer(field("conv_kernel"), 4, minimum=1),
            field("conv_kernel"))
    cfg.set("components.attention.chunk_size", cfg.integer(field("chunk_size"), chunk_default,
                                                           minimum=1), field("chunk_size"))
    cfg.set("components.attention.conv_bias", cfg.flag(field("use_conv_bias"), True),
            field("use_conv_bias"))
    cfg.set("components.attention.bias", cfg.flag(bias, False), bias)
    cfg.set("components.attention.norm_eps", cfg.number("layer_norm_epsilon", 1e-5),
            "layer_norm_epsilon")
    for name, param, default in (("time_step_min", "dt_min", 0.001),
                                 ("time_step_max", "dt_max", 0.1),
                                 ("time_step_floor", "dt_floor", 1e-4)):
        cfg.set(f"components.attention.{param}", cfg.number(field(name), default), field(name))
    limit = [_number(v) for v in cfg.get(field("time_step_limit"), [0.0, math.inf])]
    if (not isinstance(limit, (list, tuple)) or len(limit) != 2
            or not all(isinstance(v, (int, float)) and v >= 0 for v in limit)):
        raise cfg.refuse(field("time_step_limit"), f"expected [min, max] >= 0, got {limit}")
    cfg.set("components.attention.dt_limit_min", float(limit[0]), field("time_step_limit"))
    cfg.set("components.attention.dt_limit_max", 0.0 if math.isinf(limit[1]) else float(limit[1]),
            field("time_step_limit"))


def _number(value):
    """A JSON number, or transformers 5's encoding of one JSON has not ({"__float__":
    "Infinity"}, which it writes for time_step_limit's inf)."""
    if isinstance(value, dict) and set(value) == {"__float__"}:
        try:
            return float(value["__float__"])
        except (TypeError, ValueError):
            return value
    return value


# -- Nemotron-H ------------------------------------------------------------------------------

NEMOTRON_ALIASES = {"n_groups": "mamba_n_groups", "conv_kernel": "mamba_d_conv",
                    "expand": "mamba_expand", "time_step_min": "mamba_dt_min",
                    "time_step_max": "mamba_dt_max", "time_step_limit": "mamba_dt_limit",
                    "time_step_floor": "mamba_dt_init_floor", "use_conv_bias": "mamba_conv_bias",
                    "chunk_size": "mamba_chunk_size"}


def convert_nemotron_h(cfg):
    types = layer_types(cfg)
    common.sizes(cfg, layers=None, context_default=4096)
    cfg.ignore("num_hidden_layers")  # transformers 5 counts the layer types instead
    cfg.set("model.n_layers", len(types), "layers_block_type")
    common.rmsnorm(cfg, 1e-5, field="layer_norm_epsilon")
    cfg.choose("positional", "none")
    cfg.set("components.residual", "pre_norm")
    common.tying(cfg, False)
    common.attention_dropout(cfg)
    common.activation(cfg, "mlp_hidden_act", "relu2")
    if cfg.get("sliding_window") is not None:
        raise cfg.refuse("sliding_window", "set: transformers' Nemotron-H attends to the whole "
                         "context", "null")
    # Spec-wide: the Mamba-2 mixer without a feed-forward (the commonest layer); the attention
    # and MLP layers are layers: entries.
    cfg.choose("ffn", "none")
    mixer(cfg, heads="mamba_num_heads", head_dim="mamba_head_dim", state="ssm_state_size",
          bias="use_bias", act="mamba_hidden_act", chunk_default=128, aliases=NEMOTRON_ALIASES)
    attention = {"name": "gqa", "n_kv_heads": cfg.integer("num_key_value_heads", 8, minimum=1),
                 "out_bias": False}
    size = cfg.integer("head_dim", 128, minimum=1)
    if size * cfg.doc["model"]["n_heads"] != cfg.doc["model"]["emb_dim"]:
        attention["head_dim"] = size
    cfg.ignore("attention_bias")  # transformers' Nemotron-H attention has no biases at any value
    mlp = {"name": "mlp", "hidden": cfg.integer("intermediate_size", 21504, minimum=1),
           "bias": cfg.flag("mlp_bias", False)}
    n = len(types)
    rules = []
    for kind, components in (("full_attention", {"attention": attention}),
                             ("mlp", {"attention": {"name": "none"}, "ffn": mlp})):
        chosen = [i for i, t in enumerate(types) if t == kind]
        if chosen:
            rules.append({**common.select_layers(chosen, n), "components": components})
    cfg.set("layers", rules, "layers_block_type", "num_key_value_heads", "head_dim",
            "intermediate_size", "mlp_bias")
    _no_experts(cfg)


def layer_types(cfg):
    """Each layer's sublayer, from ``layers_block_type`` or ``hybrid_override_pattern``."""
    types = cfg.get("layers_block_type")
    pattern = cfg.get("hybrid_override_pattern")
    if types is None and pattern is not None:
        if not isinstance(pattern, str) or any(c not in PATTERN for c in pattern):
            raise cfg.refuse("hybrid_override_pattern", f"{str(pattern)[:60]!r}: one letter a "
                             f"layer, each one of {', '.join(PATTERN)}")
        types = [PATTERN[c] for c in pattern]
    if types is None:
        raise cfg.refuse("layers_block_type", "missing", "one entry a layer (or "
                         "hybrid_override_pattern: M = mamba, * = attention, - = mlp)")
    known = set(PATTERN.values())
    if not isinstance(types, list) or not types or any(t not in known for t in types):
        raise cfg.refuse("layers_block_type", f"{str(types)[:60]}: each entry one of "
                         f"{', '.join(sorted(known))}")
    if "moe" in types:
        raise cfg.refuse("layers_block_type", f"has moe at layer {types.index('moe')}: explorer "
                         "converts Nemotron-H's Mamba, attention and MLP layers, not its latent "
                         "mixture of experts", "linear_attention, full_attention, mlp")
    return types


def _no_experts(cfg):
    """The experts' fields, unread by transformers without moe layers."""
    if cfg.integer("num_nextn_predict_layers", 0):
        raise cfg.refuse("num_nextn_predict_layers", "set: a multi-token-prediction module", "0")
    cfg.ignore("n_routed_experts", "num_local_experts", "n_shared_experts",
               "moe_intermediate_size", "moe_shared_expert_intermediate_size", "moe_latent_size",
               "moe_shared_expert_overlap", "num_experts_per_tok", "routed_scaling_factor",
               "n_group", "topk_group", "norm_topk_prob")
