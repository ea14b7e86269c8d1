"""Hugging Face Qwen3-Next checkpoints -> the built-in gated_deltanet, gqa (with
``output_gate``) and moe names (reading; a sibling of hf_llama.py, whose names it shares).

transformers' layout differs from the Llama family's in two places, both split on reading:

- gated attention: ``self_attn.q_proj`` makes, per head, the query then the gate
  (rows ``(n_heads, 2, head_dim)``): our ``W_query`` and ``W_gate``;
- gated DeltaNet (``linear_attn``): ``in_proj_qkvz`` holds, per key head, its query and key
  rows, then the value and z rows of the value heads it serves; ``in_proj_ba`` per key head
  the b rows then the a rows of those value heads. Our ``W_query``, ``W_key``, ``W_value``,
  ``W_gate`` (z), ``W_beta`` (b) and ``W_decay`` (a) each keep their heads in order; ``conv1d``
  (q, k, v channels), ``dt_bias``, ``A_log``, ``norm`` and ``out_proj`` map one to one.

The experts are Qwen2-MoE's (one sigmoid-gated shared expert; routed experts per expert or
fused). The config.json is checked as the Llama family's is (config_check.check).
"""

import re

from explorer import ExplorerError

from .hf_llama import GLU, PRE_NORM, QWEN_MOE, TOP, _split_fused, _translator

ATTENTION = (("self_attn.k_proj", "att.W_key"), ("self_attn.v_proj", "att.W_value"),
             ("self_attn.o_proj", "att.out_proj"), ("self_attn.q_norm", "att.q_norm"),
             ("self_attn.k_norm", "att.k_norm"))
DELTANET = (("linear_attn.conv1d", "att.conv1d"), ("linear_attn.dt_bias", "att.dt_bias"),
            ("linear_attn.A_log", "att.A_log"), ("linear_attn.norm", "att.norm"),
            ("linear_attn.out_proj", "att.out_proj"))
TEMPLATES = [*TOP, *((f"model.layers.{{i}}.{hf}", f"trf_blocks.{{i}}.{ours}")
                     for hf, ours in (*ATTENTION, *DELTANET, *GLU, *QWEN_MOE, *PRE_NORM))]
FUSED_EXPERTS = re.compile(r"model\.layers\.(\d+)\.mlp\.experts\.(gate_up_proj|down_proj)")
GATED_QUERY = re.compile(r"model\.layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)")
MIXED = re.compile(r"model\.layers\.(\d+)\.linear_attn\.(in_proj_qkvz|in_proj_ba)\.weight")
BARE = re.compile(r"model\.layers\.\d+\.linear_attn\.(dt_bias|A_log)")  # no .weight suffix
MTP = "mtp."  # the multi-token-prediction module, which transformers omits too


def detect(ckpt):
    model_type = (ckpt.config or {}).get("model_type")
    if model_type is not None:
        return model_type == "qwen3_next"
    return any(".linear_attn.in_proj_qkvz." in name for name in ckpt.names)


def to_model(ckpt, model, spec):
    """Qwen3-Next tensors -> {our name: (HF name, tensor)}, the mixed projections split."""
    translate = _translator(TEMPLATES)
    out = {}
    for src, tensor in ckpt.tensors.items():
        if src.startswith(MTP):
            continue
        fused, query, mixed = (p.fullmatch(src) for p in (FUSED_EXPERTS, GATED_QUERY, MIXED))
        if fused:
            out.update(_split_fused(src, tensor, *fused.groups()))
        elif query:
            out.update(_split_gated_query(model, src, tensor, *query.groups()))
        elif mixed:
            out.update(_split_mixed(ckpt, model, src, tensor, *mixed.groups()))
        elif BARE.fullmatch(src):
            out[translate(src + ".weight").removesuffix(".weight")] = (src, tensor)
        elif (name := translate(src)) is not None:
            out[name] = (src, tensor)
        else:
            raise ExplorerError(f"{ckpt.path}: {src} is not part of the Qwen3-Next layout that "
                                "the spec describes")
    return out


def _split_gated_query(model, src, tensor, layer, part):
    """Rows (n_heads, 2, head_dim): each head's query, then its gate."""
    att = model.trf_blocks[int(layer)].att
    heads = tensor.reshape(att.n_heads, 2, att.head_dim, *tensor.shape[1:])
    rest = tensor.shape[1:]
    return {f"trf_blocks.{layer}.att.W_query.{part}": (src, heads[:, 0].reshape(-1, *rest)),
            f"trf_blocks.{layer}.att.W_gate.{part}": (src, heads[:, 1].reshape(-1, *rest))}


def _split_mixed(ckpt, model, src, tensor, layer, which):
    """Per key head: [q, k, v of its value heads, z of them] (qkvz) or [b, a] (ba)."""
    att = model.trf_blocks[int(layer)].att
    nk, dk, dv = getattr(att, "n_key_heads", 0), att.head_dim, getattr(att, "v_head_dim", 0)
    if not nk:
        raise ExplorerError(f"{ckpt.path}: {src} is a gated DeltaNet weight but the spec's layer "
                            f"{layer} is {type(att).__name__}")
    per = att.n_heads // nk  # value heads per key head
    at = f"trf_blocks.{layer}.att"
    groups = tensor.reshape(nk, -1, tensor.shape[-1])  # (nk, rows per key head, C)
    if which == "in_proj_ba":
        b, a = groups.split([per, per], dim=1)
        return {f"{at}.W_beta.weight": (src, b.reshape(-1, tensor.shape[-1])),
                f"{at}.W_decay.weight": (src, a.reshape(-1, tensor.shape[-1]))}
    q, k, v, z = groups.split([dk, dk, per * dv, per * dv], dim=1)
    names = ("W_query", "W_key", "W_value", "W_gate")
    return {f"{at}.{n}.weight": (src, t.reshape(-1, tensor.shape[-1]))
            for n, t in zip(names, (q, k, v, z))}
