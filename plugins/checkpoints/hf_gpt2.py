"""Hugging Face GPT-2 (``GPT2LMHeadModel``) <-> the built-in GPT-2 components' names.

HF stores GPT-2's linear layers as ``Conv1D``, whose weight is [in, out] (the transpose of
``nn.Linear``), fuses q, k and v side by side in ``c_attn``, and ties the head to ``wte``. The
names on our side are those of the built-in components GPT-2 is made of (layernorm's
scale/shift, mha's W_query/W_key/W_value/out_proj, mlp's layers.0/layers.2, pre_norm's
norm1/norm2), so :func:`unsupported` admits only specs built from exactly those.
"""

import json
import math
import re

import torch

from explorer import ExplorerError
from explorer.weights import Mismatch

# HF name -> (our name, stored transposed as a Conv1D weight)
TOP = {
    "wte.weight": ("tok_emb.weight", False),
    "wpe.weight": ("pos_emb.weight", False),
    "ln_f.weight": ("final_norm.scale", False),
    "ln_f.bias": ("final_norm.shift", False),
}
BLOCK = {  # under h.{i}. -> under trf_blocks.{i}.
    "ln_1.weight": ("norm1.scale", False),
    "ln_1.bias": ("norm1.shift", False),
    "attn.c_proj.weight": ("att.out_proj.weight", True),
    "attn.c_proj.bias": ("att.out_proj.bias", False),
    "ln_2.weight": ("norm2.scale", False),
    "ln_2.bias": ("norm2.shift", False),
    "mlp.c_fc.weight": ("ff.layers.0.weight", True),
    "mlp.c_fc.bias": ("ff.layers.0.bias", False),
    "mlp.c_proj.weight": ("ff.layers.2.weight", True),
    "mlp.c_proj.bias": ("ff.layers.2.bias", False),
}
QKV = ("W_query", "W_key", "W_value")  # the order of c_attn's three slices
IGNORED = ("attn.bias", "attn.masked_bias")  # causal-mask buffers in older HF saves
HEAD = "lm_head.weight"

# What the GPT-2 layout can express: the component each kind must be, and the params it may set
# (besides numerics-only ones, which never change the weights).
GPT2_COMPONENTS = {"norm": "layernorm", "activation": "gelu_tanh", "ffn": "mlp", "attention": "mha",
                   "positional": "learned", "residual": "pre_norm"}
GPT2_FREE_PARAMS = {"norm": ("eps",), "ffn": ("expansion", "bias")}
GPT2_TYING = ("none", "tied")
# Hugging Face activation names that compute GELU's tanh approximation (gelu_fast is the same
# polynomial, factored).
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
EOT = 50256  # GPT-2's <|endoftext|>


def _yaml(value):
    return value if isinstance(value, str) else json.dumps(value)


# -- reading ---------------------------------------------------------------------------------

def detect(ckpt):
    names = [name.removeprefix("transformer.") for name in ckpt.names]
    return any(name == "wte.weight" or re.match(r"h\.\d+\.", name) for name in names)


def to_model(ckpt, model, spec):
    """GPT2LMHeadModel tensors -> {our name: (HF name, tensor)}: Conv1D weights transposed to
    ``nn.Linear``'s [out, in], ``c_attn`` split into W_query, W_key, W_value."""
    out = {}

    def put(name, tensor, src, conv=False):
        if conv:  # Conv1D (in, out) -> Linear (out, in)
            if tensor.dim() != 2:
                raise ExplorerError(f"{ckpt.path}: {src} has shape {list(tensor.shape)}; a GPT-2 "
                                    "Conv1D weight is a matrix (in_features, out_features)")
            tensor = tensor.t()
        out[name] = (src, tensor.contiguous())

    for src, tensor in ckpt.tensors.items():
        key = src.removeprefix("transformer.")
        if key == HEAD:
            put("out_head.weight", tensor, src)
            continue
        if key in TOP:
            put(TOP[key][0], tensor, src, TOP[key][1])
            continue
        m = re.fullmatch(r"h\.(\d+)\.(.+)", key)
        rest = m.group(2) if m else None
        if rest in IGNORED:
            continue
        if rest in ("attn.c_attn.weight", "attn.c_attn.bias"):
            width = tensor.shape[-1]
            if width % 3:
                raise ExplorerError(f"{ckpt.path}: {src} has shape {list(tensor.shape)}; its last "
                                    "dimension should hold q, k and v (3 * n_embd)")
            leaf = rest.rsplit(".", 1)[1]
            for proj, part in zip(QKV, tensor.split(width // 3, dim=-1)):
                # weight: (C, 3C) -> three (C, C) slices, each transposed to Linear's (out, in)
                put(f"trf_blocks.{m.group(1)}.att.{proj}.{leaf}", part, src, conv=leaf == "weight")
            continue
        if rest not in BLOCK:
            raise ExplorerError(f"{ckpt.path}: {src} is not part of GPT2LMHeadModel's layout; "
                                "explorer reads GPT-2 language-model checkpoints only")
        name, conv = BLOCK[rest]
        put(f"trf_blocks.{m.group(1)}.{name}", tensor, src, conv)
    # Conv1D always has a bias; an all-zero one that the model lacks is no bias at all (what
    # from_model writes for a spec without qkv or MLP biases).
    state = model.state_dict()
    for name in [n for n, (_, t) in out.items() if n.endswith(".bias") and n not in state]:
        if not torch.any(out[name][1]):
            del out[name]
    return out


def check(ckpt, spec):
    """config.json against the spec: what GPT-2's tensor shapes cannot show."""
    cfg = ckpt.config or {}
    for hf_key, key, value in (("n_head", "model.n_heads", spec.model.n_heads),
                               ("n_layer", "model.n_layers", spec.model.n_layers),
                               ("n_embd", "model.emb_dim", spec.model.emb_dim)):
        if hf_key in cfg and cfg[hf_key] != value:
            yield Mismatch("value", source="config.json", field=hf_key, have=cfg[hf_key],
                           key=key, current=value, value=cfg[hf_key])
    eps = spec.components["norm"].params.get("eps")
    hf_eps = cfg.get("layer_norm_epsilon")
    if isinstance(hf_eps, (int, float)) and eps is not None and not math.isclose(hf_eps, eps, rel_tol=1e-6):
        yield Mismatch("value", source="config.json", field="layer_norm_epsilon", have=hf_eps,
                       key="components.norm.eps", current=eps, value=hf_eps)
    act = cfg.get("activation_function", "gelu_new")
    if act not in GELU_TANH:
        yield Mismatch("value", source="config.json", field="activation_function", have=act,
                       advice="GPT-2's gelu_tanh computes only " + ", ".join(GELU_TANH))
    for hf_key, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                       ("add_cross_attention", False)):
        if cfg.get(hf_key, ok) != ok:
            yield Mismatch("value", source="config.json", field=hf_key, have=cfg[hf_key],
                           advice=f"the mha attention computes only {hf_key}: {_yaml(ok)}")


def unsupported(spec):
    """The first spec key that the GPT-2 layout cannot express, as ``(key, reason)``, or None."""
    registry = spec.plugin_manager.registry() if spec.plugin_manager else None
    for kind, name in GPT2_COMPONENTS.items():
        choice = spec.components[kind]
        if choice.name != name:
            return f"components.{kind}", f"is {choice.name}; GPT-2 has only {name}"
        component = registry.component(kind, name) if registry else None
        for param in component.params if component else ():
            value = choice.params.get(param.name, param.default)
            if (param.numerics_only or param.name in GPT2_FREE_PARAMS.get(kind, ())
                    or value == param.default):
                continue
            return (f"components.{kind}.{param.name}",
                    f"is {_yaml(value)}; GPT-2 has only {_yaml(param.default)}")
    tying = spec.components["weight_tying"].name
    if tying not in GPT2_TYING:
        return "components.weight_tying", f"is {tying}; GPT-2 has only {' or '.join(GPT2_TYING)}"
    if spec.model.scale_embeddings:
        return "model.scale_embeddings", "is true; GPT-2 does not scale its embeddings"
    if spec.model.logit_softcap:
        return "model.logit_softcap", f"is {spec.model.logit_softcap}; GPT-2 has none (0.0)"
    if spec.model.width_multiplier != 1.0:
        return ("model.parametrization", "is mup away from its base width; GPT-2 has no output "
                                         "multiplier or 1/d attention")
    if spec.layers:
        return "layers", "sets components per layer; GPT-2's blocks are all alike"
    return None


# -- writing ---------------------------------------------------------------------------------

def _tied(model):
    return model.out_head.weight is model.tok_emb.weight


def from_model(model, spec):
    """``model``'s weights under GPT2LMHeadModel's names and layout (the inverse of to_model).

    Missing biases (qkv_bias false, an MLP without bias) are written as zeros, which computes
    the same. The head is written as ``lm_head.weight`` only when untied.
    """
    state = {k: v.detach() for k, v in model.state_dict().items()}
    out = {}
    for hf, (name, conv) in TOP.items():
        out[f"transformer.{hf}"] = state[name].t() if conv else state[name]
    for i in range(spec.model.n_layers):
        p = f"trf_blocks.{i}."
        for hf, (name, conv) in BLOCK.items():
            tensor = state.get(p + name)
            if tensor is None:  # a bias the spec leaves out
                tensor = torch.zeros_like(state[p + name.replace(".bias", ".weight")][:, 0])
            out[f"transformer.h.{i}.{hf}"] = tensor.t() if conv else tensor
        weights = [state[f"{p}att.{q}.weight"].t() for q in QKV]  # each (C, C) as Conv1D (in, out)
        out[f"transformer.h.{i}.attn.c_attn.weight"] = torch.cat(weights, dim=1)  # (C, 3C)
        biases = [state.get(f"{p}att.{q}.bias") for q in QKV]
        out[f"transformer.h.{i}.attn.c_attn.bias"] = torch.cat(
            [b if b is not None else torch.zeros_like(w[0]) for b, w in zip(biases, weights)])
    if not _tied(model):
        out[HEAD] = state["out_head.weight"]
    return out


def config(model, spec):
    """The config.json of GPT2LMHeadModel for ``spec``."""
    m = spec.model
    eot = EOT if m.vocab_size > EOT else None  # only if the vocabulary has it
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": m.vocab_size,
        "n_positions": m.context_length,
        "n_embd": m.emb_dim,
        "n_layer": m.n_layers,
        "n_head": m.n_heads,
        "n_inner": spec.components["ffn"].params["expansion"] * m.emb_dim,
        "activation_function": "gelu_new",  # GELU's tanh approximation
        "layer_norm_epsilon": spec.components["norm"].params["eps"],
        "embd_pdrop": m.dropout.embedding,
        "attn_pdrop": m.dropout.attention,
        "resid_pdrop": m.dropout.residual,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": _tied(model),
        "bos_token_id": eot,
        "eos_token_id": eot,
        "use_cache": True,
    }
