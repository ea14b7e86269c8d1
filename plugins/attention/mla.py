"""Multi-head latent attention (DeepSeek-V2, V3; imported only when building).

Keys and values are not projected from x per head: x is compressed to one latent vector of
``kv_lora_rank`` per token (normalised with the spec's norm), which an up-projection expands into
every head's key and value. The KV cache holds only that latent, plus one small key of
``qk_rope_head_dim`` shared by all heads that carries the position (RoPE cannot act on the
latent, which the up-projection would mix: "decoupled RoPE"). Queries may be compressed the same
way (``q_lora_rank``). Each head's key is [k_nope from the latent, the shared rope key]; its
query [q_nope, q_rope]; the scores are scaled by 1/sqrt(qk_nope_head_dim + qk_rope_head_dim).
"""

import torch
from torch import nn

from .mha import attend
from ..impl import uses_sdpa


class MultiHeadLatentAttention(nn.Module):
    """DeepSeek's MLA with the attention contract of explorer.model.contracts.

    Names: ``W_query`` (emb_dim -> nh * (nope + rope)) when ``q_lora_rank`` is 0, else
    ``q_down`` -> ``q_norm`` -> ``q_up``; ``kv_down`` (emb_dim -> kv_lora_rank + rope: the latent
    and the shared rope key), ``kv_norm``, ``kv_up`` (kv_lora_rank -> nh * (nope + v_head_dim)),
    ``out_proj`` (nh * v_head_dim -> emb_dim). The projections that read x have ``qkv_bias``
    biases, ``out_proj`` has ``out_bias``, the others none (DeepSeek's layout).

    For the analyses: ``n_kv_heads`` is 1 (one latent shared by every head, as in multi-query
    attention), ``head_dim`` the query/key width nope + rope, ``kv_values_per_token`` the
    elements cached per token: kv_lora_rank + qk_rope_head_dim.
    """

    def __init__(self, ctx, kv_lora_rank, q_lora_rank, qk_nope_head_dim, qk_rope_head_dim,
                 v_head_dim, impl, window, out_bias, score_scale, softcap, query_pre_attn_scalar):
        super().__init__()
        cfg = ctx.config
        self.n_heads, self.n_kv_heads = cfg.n_heads, 1
        self.kv_lora_rank, self.q_lora_rank = kv_lora_rank, q_lora_rank
        self.nope, self.rope, self.v_head_dim = qk_nope_head_dim, qk_rope_head_dim, v_head_dim
        self.head_dim = qk_nope_head_dim + qk_rope_head_dim
        self.kv_values_per_token = kv_lora_rank + qk_rope_head_dim
        self.impl, self.window, self.softcap = impl, window, softcap
        self.scale = query_pre_attn_scalar ** -0.5 if query_pre_attn_scalar else None
        self.query_pre_attn_scalar = query_pre_attn_scalar or self.head_dim
        if score_scale != 1.0:  # DeepSeek's YaRN mscale on top of 1 / sqrt(nope + rope)
            self.scale = (self.scale or self.head_dim ** -0.5) * score_scale
        d, nh = cfg.emb_dim, cfg.n_heads
        if q_lora_rank:
            self.q_down = nn.Linear(d, q_lora_rank, bias=cfg.qkv_bias)
            self.q_norm = ctx.make("norm", dim=q_lora_rank)
            self.q_up = nn.Linear(q_lora_rank, nh * self.head_dim, bias=False)
        else:
            self.W_query = nn.Linear(d, nh * self.head_dim, bias=cfg.qkv_bias)
        self.kv_down = nn.Linear(d, kv_lora_rank + qk_rope_head_dim, bias=cfg.qkv_bias)
        self.kv_norm = ctx.make("norm", dim=kv_lora_rank)
        self.kv_up = nn.Linear(kv_lora_rank, nh * (qk_nope_head_dim + v_head_dim), bias=False)
        self.out_proj = nn.Linear(nh * v_head_dim, d, bias=out_bias)
        self.dropout = nn.Dropout(cfg.dropout.attention)

    def forward(self, x, pos, positions, cache=None):
        b, t, _ = x.shape
        nh = self.n_heads
        q = self.q_up(self.q_norm(self.q_down(x))) if self.q_lora_rank else self.W_query(x)
        q = q.view(b, t, nh, self.head_dim).transpose(1, 2)  # (B, nh, T, nope + rope)
        q_nope, q_rope = q.split([self.nope, self.rope], dim=-1)
        latent, k_rope = self.kv_down(x).split([self.kv_lora_rank, self.rope], dim=-1)
        latent = self.kv_norm(latent).unsqueeze(1)  # (B, 1, T, r): one "head", shared by all
        k_rope = k_rope.unsqueeze(1)  # (B, 1, T, rope)
        q_rope, k_rope = pos.rotate(q_rope, k_rope, positions)
        k_positions = positions
        if cache is not None:  # the cache holds the latent and the rope key, nothing per head
            latent, k_rope, k_positions = cache.update(latent, k_rope, positions, self.window)
            # (B, 1, Tk, r), (B, 1, Tk, rope), (Tk,)

        tk = latent.shape[2]
        kv = self.kv_up(latent.squeeze(1))  # (B, Tk, nh * (nope + v))
        kv = kv.view(b, tk, nh, self.nope + self.v_head_dim).transpose(1, 2)  # (B, nh, Tk, nope+v)
        k_nope, values = kv.split([self.nope, self.v_head_dim], dim=-1)
        k_rope = k_rope.expand(b, nh, tk, self.rope)  # every head shares the one rope key
        keys = torch.cat((k_nope, k_rope), dim=-1)  # (B, nh, Tk, nope + rope)
        queries = torch.cat((q_nope, q_rope), dim=-1)  # (B, nh, T, nope + rope)
        bias = pos.bias(positions, k_positions)  # (nh, T, Tk) or None
        context = attend(queries, keys, values, positions, k_positions, bias, self.window,
                         self.dropout, self.fused(), self.scale, self.softcap)  # (B, nh, T, v)
        context = context.transpose(1, 2).reshape(b, t, nh * self.v_head_dim)  # (B, T, nh*v)
        return self.out_proj(context)

    def fused(self):
        """Whether this forward uses torch's fused kernel (see GroupedQueryAttention.fused)."""
        return uses_sdpa(self.impl, self.training and self.dropout.p > 0, self.softcap)
