"""Causal self-attention: the book's multi-head attention, and grouped-query attention (GQA/MQA).

One implementation serves both registered names: ``mha`` is ``gqa`` with as many key/value heads
as query heads, plus the book's ``mask`` buffer. The contract with the positional encoding is in
explorer.model.contracts.
"""

import torch
from torch import nn
from torch.nn import functional as F

from explorer.model.contracts import causal_mask
from explorer.model.parametrization import attention_scale

from ..impl import uses_sdpa


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with ``n_kv_heads`` key/value heads shared by groups of query heads.

    n_kv_heads = n_heads is multi-head attention, 1 is multi-query attention (Shazeer, 2019),
    anything between that divides n_heads is grouped-query attention (Ainslie et al., 2023).
    ``head_dim`` > 0 sets the size of each head (0: emb_dim / n_heads), so the query width
    n_heads * head_dim may differ from emb_dim (Gemma 2, Qwen3); ``out_proj`` maps it back.
    ``window`` > 0 limits each token to the last ``window`` positions (Mistral's sliding window);
    ``qk_norm`` normalises queries and keys per head with the spec's norm (OLMo-2, Gemma 3);
    ``softcap`` > 0 squashes the scaled scores into (-softcap, softcap) with tanh (Gemma 2), and
    ``query_pre_attn_scalar`` > 0 divides the scores by its square root instead of the head
    size's (Gemma 2 27B); ``output_gate`` multiplies each head's output by sigmoid of a second
    query-sized projection ``W_gate`` of x before ``out_proj`` (Qwen3-Next's gated attention);
    ``impl`` picks the book's explicit softmax ("manual"), torch's fused kernel ("sdpa", with
    its own dropout in training), the fused kernel unless the scores are soft-capped, which it
    cannot do ("auto", the default), or the fused kernel whenever attention dropout is inactive
    (eval mode, or rate 0) and the book's path when it is active ("book"), so that training
    draws the book's dropout masks and reproduces its numbers bit for bit.
    ``forward(x, pos, positions, cache=None)`` takes an optional
    :class:`explorer.model.kv_cache.KVCache`: it stores this call's keys and values and hands back the
    earlier ones for incremental decoding.
    """

    def __init__(self, ctx, n_kv_heads, impl, window, head_dim, qk_norm, out_bias, softcap,
                 query_pre_attn_scalar, output_gate):
        super().__init__()
        cfg = ctx.config
        self.n_heads = cfg.n_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = hs = head_dim or cfg.head_dim
        self.impl = impl
        self.window = window
        self.softcap = softcap
        self.scale = query_pre_attn_scalar ** -0.5 if query_pre_attn_scalar else None
        # μP: 1/d instead of 1/sqrt(d) when the head size grows with the width (not set here)
        self.scale = attention_scale(cfg, hs, grows_with_width=not head_dim, scale=self.scale)
        self.query_pre_attn_scalar = query_pre_attn_scalar or hs  # what the scores divide by
        d, q, kv = cfg.emb_dim, cfg.n_heads * hs, n_kv_heads * hs
        # Created in the book's order (query, key, value, out), so the seed gives its weights.
        self.W_query = nn.Linear(d, q, bias=cfg.qkv_bias)
        self.W_key = nn.Linear(d, kv, bias=cfg.qkv_bias)
        self.W_value = nn.Linear(d, kv, bias=cfg.qkv_bias)
        self.out_proj = nn.Linear(q, d, bias=out_bias)
        self.dropout = nn.Dropout(cfg.dropout.attention)
        self.q_norm = ctx.make("norm", dim=hs) if qk_norm else None
        self.k_norm = ctx.make("norm", dim=hs) if qk_norm else None
        self.fused_qkv = None  # set by explorer_inference_layout
        # Qwen3-Next's gated attention: each head's output times sigmoid(W_gate x).
        self.W_gate = nn.Linear(d, q, bias=cfg.qkv_bias) if output_gate else None

    def forward(self, x, pos, positions, cache=None):
        b, t, _ = x.shape
        queries, keys, values = self.project(x)  # (B, T, nh*hs), (B, T, nkv*hs), (B, T, nkv*hs)
        queries = queries.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        keys = keys.view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        values = values.view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            queries, keys = self.q_norm(queries), self.k_norm(keys)
        queries, keys = pos.rotate(queries, keys, positions)
        k_positions = positions
        if cache is not None:  # earlier tokens' keys and values join the new ones
            keys, values, k_positions = cache.update(keys, values, positions, self.window)
            # (B, nkv, Tk, hs), (Tk,)

        bias = pos.bias(positions, k_positions)  # (nh, T, Tk) or None
        context = attend(queries, keys, values, positions, k_positions, bias, self.window,
                         self.dropout, self.fused(), self.scale, self.softcap)  # (B, nh, T, hs)
        context = context.transpose(1, 2).contiguous().view(b, t, -1)  # (B, T, nh*hs)
        if self.W_gate is not None:
            context = context * torch.sigmoid(self.W_gate(x))
        return self.out_proj(context)

    def project(self, x):
        """Queries, keys and values of ``x``: one matrix product when the three weights are
        the columns of ``fused_qkv`` (:meth:`explorer_inference_layout`) and no gradient is
        wanted, else one per weight."""
        projections = (self.W_query, self.W_key, self.W_value)
        fused = self.fused_qkv
        if fused is None or torch.is_grad_enabled() or not all(
                _shares_storage(p.weight, fused[0]) for p in projections):
            return tuple(p(x) for p in projections)
        qkv = x @ fused[0] if fused[1] is None else torch.addmm(
            fused[1], x.flatten(0, -2), fused[0]).view(*x.shape[:-1], -1)  # (B, T, q + 2 kv)
        return qkv.split([p.out_features for p in projections], dim=-1)

    def explorer_inference_layout(self):
        """Store W_query, W_key and W_value input-major side by side: each weight (and bias) a
        view of its columns of one (d, q + 2 kv) matrix, so that generating a token computes
        the three with one matrix-vector product. The values, shapes and state_dict stay the
        same. Called by explorer.inference_layout."""
        projections = (self.W_query, self.W_key, self.W_value)
        with torch.no_grad():
            weight = torch.cat([p.weight.t() for p in projections], dim=1)  # (d, q + 2 kv)
            bias = None
            if self.W_query.bias is not None:
                bias = torch.cat([p.bias for p in projections])  # (q + 2 kv,)
            start = 0
            for p in projections:
                end = start + p.out_features
                p.weight.data = weight[:, start:end].t()  # (out, d), stored input-major
                if bias is not None:
                    p.bias.data = bias[start:end]
                start = end
        self.fused_qkv = (weight, bias)

    def fused(self):
        """Whether this forward uses torch's fused kernel (see :func:`uses_sdpa`)."""
        return uses_sdpa(self.impl, self.training and self.dropout.p > 0, self.softcap)


def _shares_storage(a, b):
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def attend(queries, keys, values, positions, k_positions, bias, window, dropout, fused,
           scale=None, softcap=0.0):
    """Causal attention of queries (B, nh, T, hs) over keys (B, nkv, Tk, hs) and values
    (B, nkv, Tk, hv) at absolute ``positions`` (T,) and ``k_positions`` (Tk,); (B, nh, T, hv).

    ``nkv`` divides ``nh`` (each key/value head serves nh / nkv query heads). Scores are scaled
    by ``scale`` (None: 1 / sqrt(hs)), soft-capped if ``softcap`` > 0, get ``bias`` (nh, T, Tk)
    added, and are masked causally (with a sliding ``window`` > 0). ``dropout`` (an
    nn.Dropout) acts on the weights in training. ``fused`` picks torch's kernel over the book's.
    """
    if fused:
        return _sdpa(queries, keys, values, positions, k_positions, bias, window, dropout, scale)
    mask = causal_mask(positions, k_positions, window)  # (T, Tk), True = hidden
    return _manual(queries, keys, values, mask, bias, dropout, scale, softcap)


def _manual(queries, keys, values, mask, bias, dropout, scale, softcap):
    """The book's path: mask with -inf, then softmax(scores / sqrt(hs)), then dropout."""
    groups = queries.shape[1] // keys.shape[1]
    if groups > 1:
        keys = keys.repeat_interleave(groups, dim=1)  # (B, nh, Tk, hs)
        values = values.repeat_interleave(groups, dim=1)
    scores = queries @ keys.transpose(2, 3)  # (B, nh, T, Tk)
    if softcap:
        # Gemma 2: cap the scaled scores smoothly, then mask (tanh(-inf) would be -1, not -inf).
        scores = softcap * torch.tanh(scores * (scale or keys.shape[-1] ** -0.5) / softcap)
        scores.masked_fill_(mask, -torch.inf)
    else:
        scores.masked_fill_(mask, -torch.inf)
        # The book divides by sqrt(hs); a custom scale multiplies, as Gemma does.
        scores = scores * scale if scale else scores / keys.shape[-1] ** 0.5
    if bias is not None:
        scores = scores + bias.to(scores.dtype)
    weights = torch.softmax(scores, dim=-1)
    weights = dropout(weights)
    return weights @ values  # (B, nh, T, hv)


def _sdpa(queries, keys, values, positions, k_positions, bias, window, dropout, scale):
    """torch's scaled_dot_product_attention, sharing key/value heads without copying them.

    The causal kernel when the mask is plain; no mask for one query that sees every key (a
    cached decoding step); else the mask, and the bias, as an explicit ``attn_mask``.
    """
    dropout_p = dropout.p if dropout.training else 0.0
    gqa = keys.shape[1] != queries.shape[1]
    attn_mask, is_causal = None, False
    plain = bias is None and not window
    if plain and positions is k_positions:
        is_causal = True
    elif plain and queries.shape[2] == 1:
        pass  # the newest token: every cached key is at or before it
    else:
        mask = causal_mask(positions, k_positions, window)  # (T, Tk), True = hidden
        if bias is None:
            attn_mask = ~mask  # True = attend
        else:
            attn_mask = bias.to(queries.dtype).masked_fill(mask, -torch.inf)  # (nh, T, Tk)
    return F.scaled_dot_product_attention(queries, keys, values, attn_mask=attn_mask,
                                          dropout_p=dropout_p, is_causal=is_causal,
                                          enable_gqa=gqa, scale=scale)


class MultiHeadAttention(GroupedQueryAttention):
    """The book's causal multi-head attention (section 3.6): one key/value head per query head.

    Keeps (and saves) the book's ``mask`` buffer, so its checkpoints load strictly; the mask
    itself is computed from the positions, which gives the same entries.
    """

    def __init__(self, ctx, impl, window, head_dim, qk_norm, out_bias, softcap,
                 query_pre_attn_scalar, output_gate):
        cfg = ctx.config
        super().__init__(ctx, n_kv_heads=cfg.n_heads, impl=impl, window=window,
                         head_dim=head_dim, qk_norm=qk_norm, out_bias=out_bias, softcap=softcap,
                         query_pre_attn_scalar=query_pre_attn_scalar, output_gate=output_gate)
        self.register_buffer(
            "mask", torch.triu(torch.ones(cfg.context_length, cfg.context_length), diagonal=1))

