"""Gated DeltaNet (Yang et al. 2024), as Qwen3-Next uses it (imported only when building).

Per token: q, k, v from a short causal depthwise convolution (with SiLU) of their projections;
q and k L2-normalised, q scaled by 1/sqrt(d_k); beta = sigmoid(b) and the log-decay
g = -exp(A_log) * softplus(a + dt_bias), b and a projected per value head. Per value head the
state S (d_k, d_v) follows the gated delta rule

    S_t = exp(g_t) S_{t-1} + beta_t k_t (v_t - exp(g_t) S_{t-1}^T k_t)^T      o_t = S_t^T q_t

(decay, then write the part of v_t the state does not already predict). The output is
RMS-normalised per head, gated by SiLU(z) with z a fourth projection, and projected back.

The chunked form (training) follows transformers' torch_chunk_gated_delta_rule: inside a chunk
the delta rule's updates are a unit lower-triangular system (the "UT transform"), solved once;
across chunks the state is carried as in plugins/attention/recurrence.py. Generation steps the
rule one token at a time. Key heads may be fewer than value heads: each key head serves
n_heads / n_key_heads consecutive value heads.
"""

import torch
from torch import nn
from torch.nn import functional as F

from explorer.model.kv_cache import RecurrentState

from .recurrence import causal_conv, chunks, decay, decay_within, into_chunks


def l2_normalise(x, eps=1e-6):
    """x / sqrt(sum x^2 + eps) over the last dim (transformers' and FLA's l2norm)."""
    return x * torch.rsqrt((x * x).sum(dim=-1, keepdim=True) + eps)


def chunked_delta_rule(q, k, v, g, beta, state, chunk_size):
    """The gated delta rule (module docstring) over q, k (B, H, T, dk), v (B, H, T, dv),
    log-decays g and strengths beta (B, H, T), from ``state`` (B, H, dk, dv), chunk by chunk;
    returns the outputs (B, H, T, dv) and the final state.

    Everything but the state's passage from chunk to chunk is computed for all chunks at once.
    With u and w the solutions of a chunk's system, the part of v the incoming state S does
    not predict is v_new = u - w S, and the state after the chunk is
    exp(G) S + k_decayed^T v_new = (exp(G) I - k_decayed^T w) S + k_decayed^T u, G the chunk's
    whole log-decay: one (dk, dk) x (dk, dv) product per chunk is all that runs in sequence.
    The outputs then come from every chunk's incoming state at once."""
    t, dk, dv = q.shape[2], k.shape[-1], v.shape[-1]
    size, count = chunks(t, chunk_size)
    q, k, v = (into_chunks(x, size, count) for x in (q, k, v))  # (B, H, n, c, d)
    g, beta = (into_chunks(x, size, count) for x in (g, beta))  # (B, H, n, c)
    cum, within = decay_within(g)  # (B, H, n, c), (B, H, n, c, c)
    k_beta = k * beta.unsqueeze(-1)
    # Each chunk's updates as one system: (I + strictly_lower(k_beta k^T * L)) [u w] =
    # beta [v, k exp(cum)], solved for both right-hand sides at once.
    system = (k_beta @ k.transpose(-1, -2)) * within  # (B, H, n, c, c)
    right = torch.cat((v, k * decay(cum).unsqueeze(-1)), dim=-1) * beta.unsqueeze(-1)
    u, w = torch.linalg.solve_triangular(system, right, upper=False, unitriangular=True
                                         ).split([dv, dk], dim=-1)  # (B, H, n, c, dv | dk)
    last = cum[..., -1:]  # (B, H, n, 1): each chunk's whole log-decay
    k_decayed = (k * decay(last - cum).unsqueeze(-1)).transpose(-1, -2)  # (B, H, n, dk, c)
    eye = torch.eye(dk, dtype=q.dtype, device=q.device)
    carry = decay(last).unsqueeze(-1) * eye - k_decayed @ w  # (B, H, n, dk, dk)
    written = k_decayed @ u  # (B, H, n, dk, dv)
    incoming = []
    for carry_i, written_i in zip(carry.unbind(2), written.unbind(2)):
        incoming.append(state)
        state = torch.baddbmm(written_i.flatten(0, 1), carry_i.flatten(0, 1),
                              state.flatten(0, 1)).view_as(state)
    incoming = torch.stack(incoming, dim=2)  # (B, H, n, dk, dv): the state entering each chunk
    v_new = u - w @ incoming  # (B, H, n, c, dv): what the state does not predict
    scores = (q @ k.transpose(-1, -2)) * within  # (B, H, n, c, c)
    out = (q * decay(cum).unsqueeze(-1)) @ incoming + scores @ v_new
    return out.flatten(2, 3)[:, :, :t], state


def recurrent_delta_rule(q, k, v, g, beta, state):
    """The gated delta rule one token at a time (generation); arguments and results as
    :func:`chunked_delta_rule`."""
    out = []
    for i in range(q.shape[2]):
        state = state * g[:, :, i].exp()[..., None, None]  # (B, H, dk, dv)
        k_t = k[:, :, i].unsqueeze(-1)  # (B, H, dk, 1)
        predicted = (state * k_t).sum(-2)  # S^T k: (B, H, dv)
        delta = (v[:, :, i] - predicted) * beta[:, :, i].unsqueeze(-1)
        state = state + k_t * delta.unsqueeze(-2)
        out.append((state * q[:, :, i].unsqueeze(-1)).sum(-2))  # S^T q: (B, H, dv)
    return torch.stack(out, dim=2), state


def chunked_delta_rule_flops(t, chunk_size, dk, dv):
    """FLOPs (2 per multiply-add) of :func:`chunked_delta_rule`'s matrix products per batch and
    head, per (padded) chunk of c tokens: k_beta k^T and q k^T (c*c*dk each), k_decayed^T w
    (dk*c*dk), k_decayed^T u, w S, and exp(cum) q S (c*dk*dv each), scores @ v_new (c*c*dv),
    and the state's passage (dk*dk*dv). The triangular solve (c*c*(dk + dv) / 2 multiply-adds)
    is not counted: FlopCounterMode has no formula for it."""
    c, n = chunks(t, chunk_size)
    return 2 * n * (c * c * (2 * dk + dv) + c * dk * dk + 3 * c * dk * dv + dk * dk * dv)


class GatedRMSNorm(nn.Module):
    """RMSNorm over the last dim, then times SiLU(gate), in float32 (Qwen3-Next's
    RMSNormGated): weight * x / sqrt(mean(x^2) + eps) * silu(gate)."""

    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x, gate):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        h = self.weight * h.to(x.dtype)
        return (h * F.silu(gate.float())).to(x.dtype)


class GatedDeltaNet(nn.Module):
    """Qwen3-Next's gated DeltaNet with the mixer contract of explorer.model.contracts.

    Names: ``W_query``, ``W_key`` (emb_dim -> n_key_heads * key_head_dim), ``W_value``,
    ``W_gate`` (z; emb_dim -> n_heads * value_head_dim), ``W_beta``, ``W_decay`` (b and a;
    emb_dim -> n_heads), ``conv1d`` (depthwise over the q, k, v channels in that order, no
    bias), ``A_log`` and ``dt_bias`` (n_heads,), ``norm`` (a :class:`GatedRMSNorm` of
    value_head_dim, shared by the heads) and ``out_proj``; no biases (Qwen3-Next's layout). It
    ignores ``pos``: positions reach it through the convolution and the recurrence.

    For the analyses: ``n_heads`` the value heads, ``head_dim`` the key size, ``v_head_dim``
    the value size; no KV cache; ``state_values_per_sequence`` the convolution's last K - 1
    inputs plus n_heads state matrices of key_head_dim x value_head_dim.
    """

    def __init__(self, ctx, n_heads, n_key_heads, key_head_dim, value_head_dim, conv_kernel,
                 chunk_size, norm_eps):
        super().__init__()
        cfg = ctx.config
        self.n_heads = nv = n_heads or cfg.n_heads
        self.n_key_heads = nk = n_key_heads or nv
        self.head_dim = dk = key_head_dim or cfg.emb_dim // nv
        self.v_head_dim = dv = value_head_dim or dk
        self.n_kv_heads, self.window, self.kv_values_per_token = 0, 0, 0
        self.chunk_size = chunk_size
        self.conv_dim = 2 * nk * dk + nv * dv  # q, k, v channels
        self.state_values_per_sequence = self.conv_dim * (conv_kernel - 1) + nv * dk * dv
        d = cfg.emb_dim
        self.W_query = nn.Linear(d, nk * dk, bias=False)
        self.W_key = nn.Linear(d, nk * dk, bias=False)
        self.W_value = nn.Linear(d, nv * dv, bias=False)
        self.W_gate = nn.Linear(d, nv * dv, bias=False)
        self.W_beta = nn.Linear(d, nv, bias=False)
        self.W_decay = nn.Linear(d, nv, bias=False)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, conv_kernel, groups=self.conv_dim,
                                bias=False)
        self.dt_bias = nn.Parameter(torch.ones(nv))
        self.A_log = nn.Parameter(torch.empty(nv).uniform_(0.01, 16).log())  # transformers' init
        self.norm = GatedRMSNorm(dv, norm_eps)
        self.out_proj = nn.Linear(nv * dv, d, bias=False)

    def forward(self, x, pos, positions, cache=None):
        b, t, _ = x.shape
        nv, nk, dk, dv = self.n_heads, self.n_key_heads, self.head_dim, self.v_head_dim
        state = cache.tensors if cache is not None else {}
        mixed = torch.cat((self.W_query(x), self.W_key(x), self.W_value(x)), dim=-1)
        mixed, conv_state = causal_conv(mixed, self.conv1d.weight, state.get("conv"))
        q, k, v = F.silu(mixed).split([nk * dk, nk * dk, nv * dv], dim=-1)  # (B, T, ...)
        q = l2_normalise(q.reshape(b, t, nk, dk).float()).transpose(1, 2) * dk ** -0.5
        k = l2_normalise(k.reshape(b, t, nk, dk).float()).transpose(1, 2)  # (B, nk, T, dk)
        if nk != nv:  # each key head serves nv / nk consecutive value heads
            q, k = (z.repeat_interleave(nv // nk, dim=1) for z in (q, k))  # (B, nv, T, dk)
        v = v.reshape(b, t, nv, dv).transpose(1, 2).float()  # (B, nv, T, dv)
        beta = torch.sigmoid(self.W_beta(x).float()).transpose(1, 2)  # (B, nv, T)
        g = (-self.A_log.float().exp() * F.softplus(self.W_decay(x).float() + self.dt_bias)
             ).transpose(1, 2)  # (B, nv, T), <= 0
        matrix = state.get("matrix")
        if matrix is None:
            matrix = v.new_zeros(b, nv, dk, dv)
        if cache is not None and t == 1:
            out, matrix = recurrent_delta_rule(q, k, v, g, beta, matrix)
        else:
            out, matrix = chunked_delta_rule(q, k, v, g, beta, matrix, self.chunk_size)
        if cache is not None:
            state["conv"], state["matrix"] = conv_state, matrix
            cache.advance(t)
        z = self.W_gate(x).view(b, t, nv, dv)
        out = self.norm(out.transpose(1, 2).to(x.dtype), z)  # (B, T, nv, dv)
        return self.out_proj(out.reshape(b, t, nv * dv))

    def new_cache(self, max_len):
        return RecurrentState(max_len)

    def explorer_flops(self, batch, seq_len):
        """Forward FLOPs of the mixing beyond the weight matrices: the chunked delta rule's
        matrix products (the convolution's weights are counted with the matrices)."""
        return batch * self.n_heads * chunked_delta_rule_flops(
            seq_len, self.chunk_size, self.head_dim, self.v_head_dim)
