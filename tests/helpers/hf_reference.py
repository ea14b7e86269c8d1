"""Helpers for reference tests against Hugging Face transformers: tiny random models whose
weights are copied into an explorer model built from an equivalent spec."""

import pytest
import torch
import yaml

import explorer

transformers = pytest.importorskip("transformers")

# Byte tokens, so vocab_size 256 passes the tokenizer check.
TINY = {"vocab_size": 256, "context_length": 64, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
        "qkv_bias": False, "drop_rate": 0.0}


def build_spec(write_spec, components, **model):
    doc = {"name": "reference", "seed": 0, "tokenizer": "bytes", "model": {**TINY, **model},
           "components": components}
    return explorer.load_spec(write_spec(doc))


def randomize(hf_model, seed=0):
    """Move every weight well off its initialisation (N(0, 0.02) would make all logits tiny, and
    a 1e-4 comparison of tiny logits proves little): matrices ~ N(0, 0.3^2), vectors (norm
    scales) ~ U(0.5, 1.5). Returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in hf_model.parameters():
            if p.dim() >= 2:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
    return hf_model.eval()


def load_exactly(model, tensors):
    """Copy ``tensors`` (explorer name -> tensor) into ``model``: every parameter, nothing else."""
    params = dict(model.named_parameters())
    assert set(tensors) == set(params), (set(params) ^ set(tensors))
    with torch.no_grad():
        for name, tensor in tensors.items():
            assert params[name].shape == tensor.shape, name
            params[name].copy_(tensor)
    return model.eval()


def tokens(batch, length, seed=0, vocab=256):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def assert_same_logits(ours, hf_model, ids, atol=1e-4):
    """Equal logits to ``atol``, on logits spread widely enough for that to mean something."""
    with torch.no_grad():
        want = hf_model(ids).logits
        got = ours(ids)
    assert want.std() > 0.5
    torch.testing.assert_close(got, want, atol=atol, rtol=0)


def rope_halves_from_pairs(rows):
    """Rows ordered for rotate-half RoPE from rows for interleaved-pair RoPE (DeepSeek's HF code).

    HF DeepSeek rotates pairs (2i, 2i+1) by frequency i; explorer rotates (j, j + d/2) by
    frequency j. Putting row 2j at j and row 2j+1 at j + d/2 makes the two rotations the same map
    up to that fixed permutation, applied to queries and keys alike, so every q . k is unchanged.
    """
    d = rows.shape[0]
    order = torch.cat((torch.arange(0, d, 2), torch.arange(1, d, 2)))
    return rows[order]


def from_llama_like(hf, qk_norm=False):
    """The weights of a Llama-layout model (Llama, Qwen3: q/k/v/o, gate/up/down, two RMSNorms
    per layer; Qwen3's q_norm/k_norm with ``qk_norm``) under explorer's names, head untied."""
    sd = hf.state_dict()
    out = {"tok_emb.weight": sd["model.embed_tokens.weight"],
           "final_norm.weight": sd["model.norm.weight"], "out_head.weight": sd["lm_head.weight"]}
    pairs = [("self_attn.q_proj", "att.W_query"), ("self_attn.k_proj", "att.W_key"),
             ("self_attn.v_proj", "att.W_value"), ("self_attn.o_proj", "att.out_proj"),
             ("mlp.gate_proj", "ff.fc_1"), ("mlp.up_proj", "ff.fc_2"), ("mlp.down_proj", "ff.proj"),
             ("input_layernorm", "norm1"), ("post_attention_layernorm", "norm2")]
    if qk_norm:
        pairs += [("self_attn.q_norm", "att.q_norm"), ("self_attn.k_norm", "att.k_norm")]
    for i in range(hf.config.num_hidden_layers):
        src, dst = f"model.layers.{i}.", f"trf_blocks.{i}."
        out.update({f"{dst}{ours}.weight": sd[f"{src}{theirs}.weight"] for theirs, ours in pairs})
    return out


def experts_from_hf(sd, src, dst):
    """HF's stacked expert tensors (Mixtral, DeepSeek) as one glu per expert."""
    out = {}
    for e, (gate_up, down) in enumerate(zip(sd[f"{src}gate_up_proj"], sd[f"{src}down_proj"])):
        gate, up = gate_up.chunk(2, dim=0)  # (f, C) each
        out.update({f"{dst}{e}.fc_1.weight": gate, f"{dst}{e}.fc_2.weight": up,
                    f"{dst}{e}.proj.weight": down})
    return out

# The reference's latent attention: 4 heads, every size different so no mix-up can pass.
DEEPSEEK_MLA = {"kv_lora_rank": 12, "qk_nope_head_dim": 6, "qk_rope_head_dim": 4, "v_head_dim": 5}


def from_deepseek(hf):
    """DeepSeek-V2's weights under explorer's names, the rope rows permuted from interleaved
    pairs to halves (hf_reference.rope_halves_from_pairs)."""
    sd, cfg = hf.state_dict(), hf.config
    nope, rope, rank = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.kv_lora_rank
    out = {"tok_emb.weight": sd["model.embed_tokens.weight"],
           "final_norm.weight": sd["model.norm.weight"], "out_head.weight": sd["lm_head.weight"]}
    for i in range(cfg.num_hidden_layers):
        src, dst = f"model.layers.{i}.", f"trf_blocks.{i}."
        a, att = f"{src}self_attn.", f"{dst}att."
        q = "q_b_proj" if cfg.q_lora_rank else "q_proj"
        heads = sd[f"{a}{q}.weight"].view(cfg.num_attention_heads, nope + rope, -1)
        heads = torch.cat((heads[:, :nope], torch.stack([rope_halves_from_pairs(h[nope:])
                                                         for h in heads])), dim=1)
        out[att + ("q_up.weight" if cfg.q_lora_rank else "W_query.weight")] = heads.flatten(0, 1)
        if cfg.q_lora_rank:
            out[f"{att}q_down.weight"] = sd[f"{a}q_a_proj.weight"]
            out[f"{att}q_norm.weight"] = sd[f"{a}q_a_layernorm.weight"]
        kv_down = sd[f"{a}kv_a_proj_with_mqa.weight"]  # (rank + rope, C): the latent, the rope key
        out[f"{att}kv_down.weight"] = torch.cat((kv_down[:rank],
                                                 rope_halves_from_pairs(kv_down[rank:])))
        out[f"{att}kv_norm.weight"] = sd[f"{a}kv_a_layernorm.weight"]
        out[f"{att}kv_up.weight"] = sd[f"{a}kv_b_proj.weight"]
        out[f"{att}out_proj.weight"] = sd[f"{a}o_proj.weight"]
        out[f"{dst}norm1.weight"] = sd[f"{src}input_layernorm.weight"]
        out[f"{dst}norm2.weight"] = sd[f"{src}post_attention_layernorm.weight"]
        if f"{src}mlp.gate.weight" in sd:  # MoE: router, routed experts, the shared experts
            out[f"{dst}ff.router.weight"] = sd[f"{src}mlp.gate.weight"]
            out.update(experts_from_hf(sd, f"{src}mlp.experts.", f"{dst}ff.experts."))
            mlp, ff = f"{src}mlp.shared_experts.", f"{dst}ff.shared."
        else:
            mlp, ff = f"{src}mlp.", f"{dst}ff."
        for theirs, ours in [("gate_proj", "fc_1"), ("up_proj", "fc_2"), ("down_proj", "proj")]:
            out[f"{ff}{ours}.weight"] = sd[f"{mlp}{theirs}.weight"]
    return out


def deepseek_components(q_lora_rank, moe, **attention):
    ffn = ({"name": "moe", "n_experts": 4, "top_k": 2, "n_shared": 2, "hidden": 8,
            "router": "softmax_topk", "routed_scaling": 2.5} if moe
           else {"name": "glu", "hidden": 48})
    return {"norm": {"name": "rmsnorm", "eps": 1e-6}, "activation": "silu", "ffn": ffn,
            "attention": {"name": "mla", "q_lora_rank": q_lora_rank or 0, **DEEPSEEK_MLA, **attention},
            "positional": {"name": "rope", "theta": 10000.0}, "weight_tying": "none"}
