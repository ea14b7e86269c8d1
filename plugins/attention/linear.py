"""Linear attention (Katharopoulos et al. 2020), optionally with RetNet's per-head decay
(Sun et al. 2023): the simplest member of the linear-time mixers (imported only when building).

softmax(q k^T) is replaced by a feature map phi: o_t = sum_{s<=t} gamma^(t-s) (phi(q_t) .
phi(k_s)) v_s, which is a recurrence over a (head_dim, head_dim) state per head
(plugins/attention/recurrence.py). ``normalise`` divides by sum_{s<=t} gamma^(t-s) phi(q_t) .
phi(k_s), computed as one more value column of ones, so the state is (head_dim, head_dim + 1).
"""

import torch
from torch import nn
from torch.nn import functional as F

from explorer.model.kv_cache import RecurrentState

from .recurrence import chunked_linear, chunked_linear_flops, recurrent_linear

FEATURE_MAPS = {
    "elu": lambda x: F.elu(x) + 1.0,  # positive: the normaliser never vanishes
    "identity": lambda x: x,  # RetNet
}


def retnet_log_decay(n_heads, device=None):
    """RetNet's fixed per-head decays, as logs: log(1 - 2^(-5 - h)) for head h."""
    heads = torch.arange(n_heads, dtype=torch.float32, device=device)
    return torch.log1p(-(2.0 ** (-5.0 - heads)))  # (H,)


class LinearAttention(nn.Module):
    """Causal linear attention with the mixer contract of explorer.model.contracts.

    Names: ``W_query``, ``W_key``, ``W_value`` (emb_dim -> n_heads * head_dim, ``qkv_bias``
    biases) and ``out_proj`` (back to emb_dim). Queries are scaled by 1/sqrt(head_dim) after
    the feature map. Positions reach it only through the order of the tokens: it ignores
    ``pos`` (a spec's RoPE or ALiBi acts in its softmax layers only).

    For the analyses: no KV cache (``n_kv_heads`` 0, ``kv_values_per_token`` 0);
    ``state_values_per_sequence`` is the state one sequence carries, n_heads * head_dim *
    (head_dim, + 1 when normalised), whatever its length.
    """

    def __init__(self, ctx, n_heads, head_dim, feature_map, decay, normalise, chunk_size,
                 out_bias):
        super().__init__()
        cfg = ctx.config
        self.n_heads = n_heads or cfg.n_heads
        self.head_dim = hs = head_dim or cfg.emb_dim // self.n_heads
        self.n_kv_heads, self.window, self.kv_values_per_token = 0, 0, 0
        self.feature_map, self.decay, self.normalise = feature_map, decay, normalise
        self.chunk_size = chunk_size
        self.state_values_per_sequence = self.n_heads * hs * (hs + int(normalise))
        d, inner = cfg.emb_dim, self.n_heads * hs
        self.W_query = nn.Linear(d, inner, bias=cfg.qkv_bias)
        self.W_key = nn.Linear(d, inner, bias=cfg.qkv_bias)
        self.W_value = nn.Linear(d, inner, bias=cfg.qkv_bias)
        self.out_proj = nn.Linear(inner, d, bias=out_bias)

    def forward(self, x, pos, positions, cache=None):
        b, t, _ = x.shape
        nh, hs = self.n_heads, self.head_dim
        phi = FEATURE_MAPS[self.feature_map]
        q = phi(self.W_query(x).view(b, t, nh, hs).transpose(1, 2)) * hs ** -0.5  # (B, nh, T, hs)
        k = phi(self.W_key(x).view(b, t, nh, hs).transpose(1, 2))
        v = self.W_value(x).view(b, t, nh, hs).transpose(1, 2)
        if self.normalise:  # the normaliser is the output for a value of ones
            v = torch.cat((v, v.new_ones(b, nh, t, 1)), dim=-1)  # (B, nh, T, hs + 1)
        g = None
        if self.decay:
            g = retnet_log_decay(nh, x.device).to(q.dtype)[None, :, None].expand(b, nh, t)
        state = cache.tensors.get("state") if cache is not None else None
        if state is None:
            state = q.new_zeros(b, nh, hs, v.shape[-1])  # (B, nh, hs, hs [+ 1])
        if cache is not None and t == 1:
            out, state = recurrent_linear(q, k, v, g, state)
        else:
            out, state = chunked_linear(q, k, v, g, state, self.chunk_size)
        if cache is not None:
            cache.tensors["state"] = state
            cache.advance(t)
        if self.normalise:
            out = out[..., :hs] / (out[..., hs:] + 1e-6)  # (B, nh, T, hs)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, nh * hs))

    def new_cache(self, max_len):
        return RecurrentState(max_len)

    def explorer_flops(self, batch, seq_len):
        """Forward FLOPs of the mixing beyond the weight matrices: the chunked recurrence."""
        dv = self.head_dim + int(self.normalise)
        return batch * self.n_heads * chunked_linear_flops(seq_len, self.chunk_size,
                                                           self.head_dim, dv)
