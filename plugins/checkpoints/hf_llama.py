"""Hugging Face Llama-family checkpoints (llama, mistral, qwen2, qwen3, mixtral, gemma2,
qwen2_moe, qwen3_moe; phi3 read only) <-> the built-in components' names.

transformers' Llama family shares one layout: ``model.embed_tokens``, per layer
``self_attn.{q,k,v,o}_proj`` (Qwen3 adds ``q_norm``/``k_norm``), ``mlp.{gate,up,down}_proj``
(Mixtral: ``block_sparse_moe.gate`` and ``experts.{e}.w1/w3/w2``; Qwen-MoE: ``mlp.gate`` and
``mlp.experts.{e}.{gate,up,down}_proj``, Qwen2-MoE's ``mlp.shared_expert.*`` and
``mlp.shared_expert_gate``; the routed experts of both also as transformers 5's fused
``mlp.experts.gate_up_proj``/``down_proj`` in memory), ``input_layernorm`` and
``post_attention_layernorm`` (Gemma 2 adds ``pre_/post_feedforward_layernorm``: its sandwich),
``model.norm`` and ``lm_head`` (absent when tied). Every linear layer is ``nn.Linear``, stored as
explorer stores it, so names map one to one; Phi-3 fuses ``self_attn.qkv_proj`` (q, k, v rows)
and ``mlp.gate_up_proj`` (gate rows, then up), which are split. Which spec keys the layout can
hold and the config.json it writes are in :mod:`hf_llama_layout`; the check of a
checkpoint's config.json is :mod:`config_check`'s.
"""

import re

from explorer import ExplorerError

from . import hf_llama_layout as layout

TOP = (("model.embed_tokens", "tok_emb"), ("model.norm", "final_norm"), ("lm_head", "out_head"))
ATTENTION = (("self_attn.q_proj", "att.W_query"), ("self_attn.k_proj", "att.W_key"),
             ("self_attn.v_proj", "att.W_value"), ("self_attn.o_proj", "att.out_proj"),
             ("self_attn.q_norm", "att.q_norm"), ("self_attn.k_norm", "att.k_norm"))
GLU = (("mlp.gate_proj", "ff.fc_1"), ("mlp.up_proj", "ff.fc_2"), ("mlp.down_proj", "ff.proj"))
# Mixtral's experts: w1 is the gate (fed to the activation, our fc_1), w3 the up projection it
# multiplies (fc_2), w2 the down projection (proj).
MIXTRAL = (("block_sparse_moe.gate", "ff.router"),
           ("block_sparse_moe.experts.{e}.w1", "ff.experts.{e}.fc_1"),
           ("block_sparse_moe.experts.{e}.w3", "ff.experts.{e}.fc_2"),
           ("block_sparse_moe.experts.{e}.w2", "ff.experts.{e}.proj"))
# Qwen-MoE's experts, named as the Hub's files and save_pretrained name them (transformers 5
# stacks them in memory: FUSED_EXPERTS), and Qwen2-MoE's shared expert and its gate.
QWEN_MOE = (("mlp.gate", "ff.router"),
            ("mlp.experts.{e}.gate_proj", "ff.experts.{e}.fc_1"),
            ("mlp.experts.{e}.up_proj", "ff.experts.{e}.fc_2"),
            ("mlp.experts.{e}.down_proj", "ff.experts.{e}.proj"),
            ("mlp.shared_expert.gate_proj", "ff.shared.fc_1"),
            ("mlp.shared_expert.up_proj", "ff.shared.fc_2"),
            ("mlp.shared_expert.down_proj", "ff.shared.proj"),
            ("mlp.shared_expert_gate", "ff.shared_gate"))
PRE_NORM = (("input_layernorm", "norm1"), ("post_attention_layernorm", "norm2"))
SANDWICH = (("input_layernorm", "norm1"), ("post_attention_layernorm", "post_norm1"),
            ("pre_feedforward_layernorm", "norm2"), ("post_feedforward_layernorm", "post_norm2"))
FUSED_EXPERTS = re.compile(r"model\.layers\.(\d+)\.mlp\.experts\.(gate_up_proj|down_proj)")
FUSED_PHI3 = re.compile(r"model\.layers\.(\d+)\.(self_attn\.qkv_proj|mlp\.gate_up_proj)\.weight")
IGNORED = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")  # old saves' buffer
LAYER = re.compile(r"model\.layers\.\d+\.(self_attn|mlp|block_sparse_moe)\.")


def pairs(spec, reading=False):
    """``(HF name, explorer name)`` templates of the spec's layout, without ``.weight`` /
    ``.bias``; ``{i}`` stands for a layer, ``{e}`` for an expert. A Qwen-MoE spec has the
    dense layers' names too. ``reading`` takes either MoE naming (and so the names transformers
    5 holds in memory: ``mlp.gate`` for Mixtral's router); the config.json check tells the
    types apart."""
    moe = spec.components["ffn"].name == "moe"
    if not moe:
        experts = GLU
    elif reading:
        experts = (*MIXTRAL, *QWEN_MOE, *GLU)
    else:
        experts = (*QWEN_MOE, *GLU) if layout.kind_of(spec) in layout.QWEN_MOE else MIXTRAL
    block = [*ATTENTION, *experts,
             *(SANDWICH if spec.components["residual"].name == "sandwich" else PRE_NORM)]
    return [*TOP, *((f"model.layers.{{i}}.{hf}", f"trf_blocks.{{i}}.{ours}")
                    for hf, ours in block)]


def _translator(templates):
    """A function name -> translated name (or None) for ``(from, to)`` templates."""
    compiled = []
    for src, dst in templates:
        pattern = re.escape(src).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{e\}", r"(?P<e>\d+)")
        compiled.append((re.compile(pattern + r"\.(?P<leaf>weight|bias)"), dst))

    def translate(name):
        for pattern, dst in compiled:
            m = pattern.fullmatch(name)
            if m:
                fields = m.groupdict()
                return dst.format(**fields) + "." + fields["leaf"]
        return None

    return translate


# -- reading ---------------------------------------------------------------------------------

def detect(ckpt):
    cfg = ckpt.config or {}
    if cfg.get("model_type", "llama") not in (*layout.TYPES, *layout.READ_ONLY):
        return False
    return any(name == "model.embed_tokens.weight" or LAYER.match(name) for name in ckpt.names)


def to_model(ckpt, model, spec):
    """Llama-family tensors -> {our name: (HF name, tensor)}."""
    translate = _translator(pairs(spec, reading=True))
    out = {}
    for src, tensor in ckpt.tensors.items():
        if IGNORED.fullmatch(src):
            continue
        fused = FUSED_EXPERTS.fullmatch(src)
        if fused:
            out.update(_split_fused(src, tensor, *fused.groups()))
            continue
        fused = FUSED_PHI3.fullmatch(src)
        if fused:
            out.update(_split_phi3(ckpt, model, src, tensor, *fused.groups()))
            continue
        name = translate(src)
        if name is None:
            raise ExplorerError(f"{ckpt.path}: {src} is not part of the Llama-family layout "
                                f"({layout.label(spec)}) that the spec describes")
        out[name] = (src, tensor)
    return out


def _split_fused(src, tensor, layer, which):
    """transformers 5's stacked experts, (E, 2f, C) gate over up and (E, C, f) down, as one glu
    per expert."""
    ff = f"trf_blocks.{layer}.ff.experts"
    if which == "down_proj":
        return {f"{ff}.{e}.proj.weight": (src, t) for e, t in enumerate(tensor)}
    out = {}
    for e, gate_up in enumerate(tensor):
        gate, up = gate_up.chunk(2, dim=0)  # (f, C) each
        out[f"{ff}.{e}.fc_1.weight"] = (src, gate)
        out[f"{ff}.{e}.fc_2.weight"] = (src, up)
    return out


def _split_phi3(ckpt, model, src, tensor, layer, which):
    """Phi-3's fused rows: ``qkv_proj`` q, k, v (the sizes the spec's attention makes) and
    ``gate_up_proj`` gate over up."""
    block = f"trf_blocks.{layer}"
    if which == "mlp.gate_up_proj":
        gate, up = tensor.chunk(2, dim=0)  # (f, C) each
        return {f"{block}.ff.fc_1.weight": (src, gate), f"{block}.ff.fc_2.weight": (src, up)}
    att = model.trf_blocks[int(layer)].att
    sizes = [att.W_query.out_features, att.W_key.out_features, att.W_value.out_features]
    if tensor.shape[0] != sum(sizes):
        raise ExplorerError(f"{ckpt.path}: {src} has {tensor.shape[0]} rows but the spec's "
                            f"attention makes q, k, v of {', '.join(map(str, sizes))} (model."
                            "n_heads, components.attention.n_kv_heads, head_dim)")
    q, k, v = tensor.split(sizes, dim=0)
    return {f"{block}.att.W_query.weight": (src, q), f"{block}.att.W_key.weight": (src, k),
            f"{block}.att.W_value.weight": (src, v)}


# -- writing ---------------------------------------------------------------------------------

def from_model(model, spec):
    """``model``'s weights under the Llama family's names (the inverse of to_model); a tied
    head is left to ``tie_word_embeddings``."""
    translate = _translator([(ours, hf) for hf, ours in pairs(spec)])
    tied = model.out_head.weight is model.tok_emb.weight
    out = {}
    for name, tensor in model.state_dict().items():
        if (tied and name == "out_head.weight") or name.endswith(".att.mask"):
            continue  # the book's causal-mask buffer (mha) is rebuilt by transformers
        hf = translate(name)
        if hf is None:
            raise ExplorerError(f"{name} has no place in the {layout.label(spec)} layout")
        out[hf] = tensor.detach()
    return out
