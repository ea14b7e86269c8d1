"""Hugging Face DeepSeek-V2 and V3 checkpoints <-> the built-in mla, glu and moe names.

transformers' layout: ``model.embed_tokens``; per layer ``self_attn.q_proj`` (or, with a
q_lora_rank, ``q_a_proj`` -> ``q_a_layernorm`` -> ``q_b_proj``), ``kv_a_proj_with_mqa`` (the
latent and the shared rope key), ``kv_a_layernorm``, ``kv_b_proj``, ``o_proj``; the first
``first_k_dense_replace`` layers ``mlp.{gate,up,down}_proj``, the others ``mlp.gate`` (the
router; V3 adds ``e_score_correction_bias``), ``mlp.experts.{e}.{gate,up,down}_proj`` (or
transformers 5's fused ``mlp.experts.gate_up_proj``/``down_proj`` in memory) and
``mlp.shared_experts.{gate,up,down}_proj``; ``input_layernorm``, ``post_attention_layernorm``;
``model.norm`` and ``lm_head``.

RoPE: DeepSeek rotates interleaved pairs (2i, 2i+1) by frequency i (V2 always, V3 unless its
config says ``rope_interleave: false``); explorer's rope rotates (j, j + d/2). The rows that make
the rotated part, each head's last ``qk_rope_head_dim`` rows of the query projection and the last
``qk_rope_head_dim`` rows of ``kv_a_proj_with_mqa``, are reordered on reading (row 2j to j, row
2j + 1 to j + d/2) and back on writing: queries and keys are permuted alike, so every score is
the same. Which specs the layout holds and its config.json are in :mod:`hf_deepseek_layout`.
"""

import re

import torch

from explorer import ExplorerError

from . import hf_deepseek_layout as layout
from .hf_llama import TOP, _split_fused, _translator

ATTENTION = (("self_attn.q_proj", "att.W_query"), ("self_attn.q_a_proj", "att.q_down"),
             ("self_attn.q_a_layernorm", "att.q_norm"), ("self_attn.q_b_proj", "att.q_up"),
             ("self_attn.kv_a_proj_with_mqa", "att.kv_down"),
             ("self_attn.kv_a_layernorm", "att.kv_norm"), ("self_attn.kv_b_proj", "att.kv_up"),
             ("self_attn.o_proj", "att.out_proj"),
             ("input_layernorm", "norm1"), ("post_attention_layernorm", "norm2"))
GLU = (("gate_proj", "fc_1"), ("up_proj", "fc_2"), ("down_proj", "proj"))
FFN = (*((f"mlp.{hf}", f"ff.{ours}") for hf, ours in GLU),
       ("mlp.gate", "ff.router"),
       *((f"mlp.experts.{{e}}.{hf}", f"ff.experts.{{e}}.{ours}") for hf, ours in GLU),
       *((f"mlp.shared_experts.{hf}", f"ff.shared.{ours}") for hf, ours in GLU))
TEMPLATES = [*TOP, *((f"model.layers.{{i}}.{hf}", f"trf_blocks.{{i}}.{ours}")
                     for hf, ours in (*ATTENTION, *FFN))]
SCORE_BIAS = re.compile(r"model\.layers\.(\d+)\.mlp\.gate\.e_score_correction_bias")
FUSED_EXPERTS = re.compile(r"model\.layers\.(\d+)\.mlp\.experts\.(gate_up_proj|down_proj)")
LAYER = re.compile(r"model\.layers\.(\d+)\.")
FP8_SCALE = ".weight_scale_inv"  # the published V3's fp8 block scales
# Explorer names whose rows hold rope parts: per head (queries), or at the end (the shared key).
PER_HEAD = re.compile(r"trf_blocks\.(\d+)\.att\.(W_query|q_up)\.(weight|bias)")
SHARED_KEY = re.compile(r"trf_blocks\.(\d+)\.att\.kv_down\.(weight|bias)")


def halves_from_pairs(d):
    """The row order that puts rope pair (2j, 2j + 1) at (j, j + d/2)."""
    return torch.cat((torch.arange(0, d, 2), torch.arange(1, d, 2)))


def _reorder(name, tensor, model, order_of):
    """``tensor`` with its rope rows in the order ``order_of(d)`` gives; unchanged when it is not
    a rope-holding tensor or does not have the shape the model expects (the core then names the
    misfit)."""
    per_head, shared = PER_HEAD.fullmatch(name), SHARED_KEY.fullmatch(name)
    if not (per_head or shared):
        return tensor
    att = model.trf_blocks[int((per_head or shared).group(1))].att
    order = order_of(att.rope)
    if shared:
        if tensor.shape[0] != att.kv_lora_rank + att.rope:
            return tensor
        return torch.cat((tensor[:att.kv_lora_rank], tensor[att.kv_lora_rank:][order]))
    if tensor.shape[0] != att.n_heads * att.head_dim:
        return tensor
    heads = tensor.reshape(att.n_heads, att.head_dim, *tensor.shape[1:])  # (nh, nope + rope, ...)
    heads = torch.cat((heads[:, :att.nope], heads[:, att.nope:][:, order]), dim=1)
    return heads.reshape(tensor.shape)


# -- reading ---------------------------------------------------------------------------------

def detect(ckpt):
    model_type = (ckpt.config or {}).get("model_type")
    if model_type is not None:
        return model_type in layout.TYPES
    return any(".self_attn.kv_a_proj_with_mqa." in name for name in ckpt.names)


def to_model(ckpt, model, spec):
    """DeepSeek tensors -> {our name: (HF name, tensor)}, the rope rows reordered."""
    config = ckpt.config or {}
    translate = _translator(TEMPLATES)
    n_layers = config.get("num_hidden_layers", spec.model.n_layers)
    mtp = range(n_layers, n_layers + (config.get("num_nextn_predict_layers") or 0))
    interleaved = config.get("model_type") != "deepseek_v3" or config.get("rope_interleave", True)
    out = {}
    for src, tensor in ckpt.tensors.items():
        layer = LAYER.match(src)
        if layer and int(layer.group(1)) in mtp:
            continue  # V3's multi-token-prediction module, which transformers omits too
        if src.endswith(FP8_SCALE):
            raise ExplorerError(f"{ckpt.path}: {src}: the weights are fp8 blocks "
                                "(quantization_config); explorer reads them dequantized to "
                                "bfloat16 or float32")
        bias = SCORE_BIAS.fullmatch(src)
        fused = FUSED_EXPERTS.fullmatch(src)
        if bias:
            out[f"trf_blocks.{bias.group(1)}.ff.score_bias"] = (src, tensor)
        elif fused:
            out.update(_split_fused(src, tensor, *fused.groups()))
        elif (name := translate(src)) is not None:
            out[name] = (src, _reorder(name, tensor, model, halves_from_pairs)
                         if interleaved else tensor)
        else:
            raise ExplorerError(f"{ckpt.path}: {src} is not part of the DeepSeek layout that "
                                "the spec describes")
    return out


# -- writing ---------------------------------------------------------------------------------

def pairs_from_halves(d):
    """The inverse of :func:`halves_from_pairs`: back to interleaved pairs."""
    return torch.argsort(halves_from_pairs(d))


def from_model(model, spec):
    """``model``'s weights under DeepSeek's names, the rope rows back in interleaved pairs (the
    inverse of to_model); a tied head is left to ``tie_word_embeddings``."""
    translate = _translator([(ours, hf) for hf, ours in TEMPLATES])
    tied = model.out_head.weight is model.tok_emb.weight
    out = {}
    for name, tensor in model.state_dict().items():
        if tied and name == "out_head.weight":
            continue
        bias = re.fullmatch(r"trf_blocks\.(\d+)\.ff\.score_bias", name)
        hf = (f"model.layers.{bias.group(1)}.mlp.gate.e_score_correction_bias" if bias
              else translate(name))
        if hf is None:
            raise ExplorerError(f"{name} has no place in the DeepSeek layout")
        out[hf] = _reorder(name, tensor.detach(), model, pairs_from_halves)
    return out
