"""Hugging Face Mamba-2 and Nemotron-H checkpoints -> the built-in mamba2, gqa and mlp names
(reading only).

transformers' layout: ``backbone.embeddings``; per layer ``backbone.layers.{i}.norm`` and one
``mixer``: Mamba-2's ``in_proj``, ``conv1d``, ``dt_bias``, ``A_log``, ``D``, ``norm`` (gated),
``out_proj`` (explorer's mamba2 keeps these names), Nemotron-H's attention ``q_proj``,
``k_proj``, ``v_proj``, ``o_proj`` or MLP ``up_proj``, ``down_proj``; ``backbone.norm_f`` and
``lm_head`` (absent when tied). A layer's one norm is the block's norm of the sublayer it has:
``norm1`` before a mixer, ``norm2`` before an MLP (the other is an identity). config.json is
checked as the Llama family's is (:func:`config_check.check`).
"""

import re

from explorer import ExplorerError

TYPES = ("mamba2", "nemotron_h")
TOP = {"backbone.embeddings.weight": "tok_emb.weight", "backbone.norm_f.weight": "final_norm.weight",
       "lm_head.weight": "out_head.weight"}
LAYER = re.compile(r"backbone\.layers\.(\d+)\.(norm|mixer)\.(.+)")
ATTENTION = {"q_proj": "W_query", "k_proj": "W_key", "v_proj": "W_value", "o_proj": "out_proj"}
MLP = {"up_proj": "layers.0", "down_proj": "layers.2"}


def detect(ckpt):
    model_type = (ckpt.config or {}).get("model_type")
    if model_type is not None:
        return model_type in TYPES
    return any(name.startswith("backbone.layers.") and ".mixer." in name for name in ckpt.names)


def to_model(ckpt, model, spec):
    """Mamba-2 / Nemotron-H tensors -> {our name: (HF name, tensor)}."""
    out = {}
    for src, tensor in ckpt.tensors.items():
        name = TOP.get(src) or _layer_name(src, model)
        if name is None:
            raise ExplorerError(f"{ckpt.path}: {src} is not part of the Mamba-2 / Nemotron-H "
                                "layout that the spec describes")
        out[name] = (src, tensor)
    return out


def _layer_name(src, model):
    match = LAYER.fullmatch(src)
    if not match or int(match.group(1)) >= len(model.trf_blocks):
        return None
    i, part, rest = match.groups()
    block = model.trf_blocks[int(i)]
    has_mixer = not getattr(block.att, "absent", False)
    if part == "norm":
        return f"trf_blocks.{i}.{'norm1' if has_mixer else 'norm2'}.{rest}"
    module, _, leaf = rest.partition(".")
    if not has_mixer:
        return f"trf_blocks.{i}.ff.{MLP[module]}.{leaf}" if module in MLP else None
    return f"trf_blocks.{i}.att.{ATTENTION.get(module, module)}" + (f".{leaf}" if leaf else "")
