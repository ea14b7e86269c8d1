"""Qwen3-Next configs -> a hybrid: gated DeltaNet (``gated_deltanet``) in the
``linear_attention`` layers, gated softmax attention (``gqa`` with ``output_gate`` and
Qwen3's per-head q/k RMSNorm) in the ``full_attention`` ones, routed experts with one gated
shared expert (``moe``, read as Qwen2-MoE's: plugins/converters/qwen_moe.py).

As transformers' Qwen3NextConfig: ``layer_types`` (absent: every ``full_attention_interval``-th
layer, default 4, is full attention); RoPE rotates the first ``partial_rotary_factor`` (default
0.25) of each head; the RMSNorms scale by 1 + weight (rmsnorm ``unit_offset``), except the
DeltaNet's gated output norm, which scales by its weight (the mixer's own).
"""

from . import common
from .qwen_moe import _feed_forward

DEFAULTS = {"num_key_value_heads": 2, "num_experts": 512, "num_experts_per_tok": 10,
            "moe_intermediate_size": 512, "intermediate_size": 5632,
            "shared_expert_intermediate_size": 512}
KINDS = ("linear_attention", "full_attention")


def convert(cfg):
    common.sizes(cfg, context_default=32768)
    common.rmsnorm(cfg, 1e-6, unit_offset=True)
    common.activation(cfg, "hidden_act", "silu")
    cfg.choose("attention", "gqa")
    common.kv_heads(cfg, DEFAULTS["num_key_value_heads"])
    common.attention_bias(cfg)
    cfg.set("components.attention.head_dim", cfg.integer("head_dim", 256, minimum=1), "head_dim")
    cfg.set("components.attention.qk_norm", True)
    cfg.set("components.attention.output_gate", True)
    common.rope(cfg, 10000.0, partial=0.25)
    cfg.set("components.residual", "pre_norm")
    common.tying(cfg, False)
    common.attention_dropout(cfg)
    _linear_layers(cfg)
    _feed_forward(cfg, DEFAULTS)


def _layer_types(cfg, n_layers):
    types = cfg.get("layer_types", None)
    if types is None:
        every = cfg.integer("full_attention_interval", 4, minimum=1)
        return ["linear_attention" if (i + 1) % every else "full_attention"
                for i in range(n_layers)]
    cfg.ignore("full_attention_interval")  # layer_types says it per layer
    if not isinstance(types, list) or len(types) != n_layers or any(t not in KINDS for t in types):
        raise cfg.refuse("layer_types", f"expected {n_layers} entries, each one of "
                         f"{', '.join(KINDS)}, got {str(types)[:80]}")
    return types


def _linear_layers(cfg):
    n_layers = cfg.doc["model"]["n_layers"]
    linear = [i for i, t in enumerate(_layer_types(cfg, n_layers)) if t == "linear_attention"]
    fields = ("linear_num_value_heads", "linear_num_key_heads", "linear_key_head_dim",
              "linear_value_head_dim", "linear_conv_kernel_dim")
    if not linear:
        cfg.ignore(*fields)
        return
    mixer = {"name": "gated_deltanet",
             "n_heads": cfg.integer("linear_num_value_heads", 32, minimum=1),
             "n_key_heads": cfg.integer("linear_num_key_heads", 16, minimum=1),
             "key_head_dim": cfg.integer("linear_key_head_dim", 128, minimum=1),
             "value_head_dim": cfg.integer("linear_value_head_dim", 128, minimum=1),
             "conv_kernel": cfg.integer("linear_conv_kernel_dim", 4, minimum=1),
             "norm_eps": cfg.doc["components"]["norm"]["eps"]}
    if mixer["n_heads"] % mixer["n_key_heads"]:
        raise cfg.refuse("linear_num_key_heads", f"{mixer['n_key_heads']} does not divide "
                         f"linear_num_value_heads {mixer['n_heads']}")
    if len(linear) == n_layers:
        cfg.doc["components"]["attention"] = mixer
        cfg.ignore("layer_types", *fields)
        return
    full = [i for i in range(n_layers) if i not in linear]
    if len(linear) > len(full):  # the mixer spec-wide, the softmax layers the exception
        softmax = cfg.doc["components"]["attention"]
        cfg.doc["components"]["attention"] = mixer
        rule = {**common.select_layers(full, n_layers), "components": {"attention": softmax}}
    else:
        rule = {**common.select_layers(linear, n_layers), "components": {"attention": mixer}}
    cfg.set("layers", [*cfg.doc.get("layers", ()), rule], "layer_types", *fields)
