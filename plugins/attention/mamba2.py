"""Mamba-2's SSD layer (Dao & Gu 2024) as a token mixer in attention's place (imported only when
building).

As transformers' ``Mamba2Mixer`` (its torch path): ``in_proj`` maps x to the gate z, the
convolution's input xBC and the step dt; a depthwise causal convolution and SiLU over xBC, which
splits into x (heads of ``head_dim``), B and C (``n_groups`` groups of ``d_state``, each shared by
``heads / n_groups`` heads); per head a scalar decay ``A = -exp(A_log)`` and a step
``dt = softplus(dt + dt_bias)``. The state of each head, a (head_dim, d_state) matrix, evolves as

    h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T,    y_t = h_t C_t + D x_t,

then a gated RMSNorm (x * silu(z), normalised per group: transformers' ``norm_before_gate``
False) and ``out_proj``. Training runs the chunked form (the SSD "dual": within a chunk a masked
quadratic form, between chunks the recurrence on chunk-end states); generation runs the
recurrence one token at a time, carrying the convolution's last inputs and the state matrices
in a :class:`RecurrentState`. Both give the same outputs.

The mixer has no keys and no positions: ``pos`` is ignored (transformers' Mamba-2 has no RoPE;
in a hybrid, the attention layers apply the spec's encoding).
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from explorer.model.kv_cache import RecurrentState

from .recurrence import causal_conv, decay


class GatedRMSNorm(nn.Module):
    """RMSNorm of ``x * silu(gate)`` over groups of ``group_size`` channels, then a scale
    (transformers' ``Mamba2RMSNormGated``; computed in float32)."""

    def __init__(self, dim, group_size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.group_size, self.eps = group_size, eps

    def forward(self, x, gate):
        dtype = x.dtype
        x = x.float() * F.silu(gate.float())
        groups = x.view(*x.shape[:-1], -1, self.group_size)  # (..., n_groups, group_size)
        groups = groups * torch.rsqrt(groups.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * groups.view(x.shape).to(dtype)


def segment_sums(a):
    """``out[..., i, j] = a[..., j+1] + ... + a[..., i]`` for j <= i, -inf above the diagonal:
    the log-decay from position j to i within a chunk. (..., L) -> (..., L, L). Differences of
    one cumulative sum, taken in float64: in float32 they lose digits (two running sums near
    -1000 leave a difference good to about 1e-4), which is why transformers' torch path sums
    masked copies instead; in float64 the difference is good to about 1e-13, so the result is
    float32's rounding of the exact sum, and it costs one subtraction per pair instead of an
    L-long running sum over an (L, L) copy."""
    length = a.shape[-1]
    cum = a.double().cumsum(dim=-1)
    sums = (cum[..., :, None] - cum[..., None, :]).to(a.dtype)  # [..., i, j] = cum_i - cum_j
    upper = torch.ones(length, length, dtype=torch.bool, device=a.device).triu(1)
    return sums.masked_fill(upper, -torch.inf)


def ssd_chunked(x, dt, A, B, C, chunk_size, state):
    """The chunked SSD scan. x (b, T, h, p), dt (b, T, h), A (h,), B and C (b, T, h, n) (one per
    head), state (b, h, p, n) before the first token. Returns y (b, T, h, p) without the D skip,
    and the state after the last token."""
    b, t, h, p = x.shape
    pad = (-t) % chunk_size  # zeros at the end: dt 0 neither decays nor adds to the state
    x, dt, B, C = (F.pad(v, (0, 0) * (v.dim() - 2) + (0, pad)) for v in (x, dt, B, C))
    c = x.shape[1] // chunk_size
    x = (x * dt[..., None]).view(b, c, chunk_size, h, p)  # (b, c, l, h, p): dt-scaled inputs
    B = B.view(b, c, chunk_size, h, -1)  # (b, c, l, h, n)
    C = C.view(b, c, chunk_size, h, -1)
    a = (dt * A).view(b, c, chunk_size, h).permute(0, 3, 1, 2)  # (b, h, c, l): log-decays
    a_cum = a.cumsum(dim=-1)

    # Within each chunk: y_i = sum_{j<=i} (C_i . B_j) exp(a_{j+1..i}) x_j dt_j.
    within = decay(segment_sums(a))  # (b, h, c, l, s)
    scores = torch.einsum("bclhn,bcshn->bhcls", C, B) * within
    y = torch.einsum("bhcls,bcshp->bclhp", scores, x)

    # Each chunk's contribution to the state at its end, then the recurrence across chunks.
    to_end = decay(a_cum[..., -1:] - a_cum)  # (b, h, c, l)
    chunk_states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, to_end, x)
    chunk_states = torch.cat((state[:, None], chunk_states), dim=1)  # (b, c + 1, h, p, n)
    across = decay(segment_sums(F.pad(a_cum[..., -1], (1, 0))))  # (b, h, c + 1, c + 1)
    starts = torch.einsum("bhzc,bchpn->bzhpn", across, chunk_states)  # state at each chunk start
    starts, final = starts[:, :-1], starts[:, -1]

    # What the state at each chunk's start adds to its outputs.
    y = y + torch.einsum("bclhn,bchpn,bhcl->bclhp", C, starts, decay(a_cum))
    return y.reshape(b, c * chunk_size, h, p)[:, :t], final


def ssd_step(x, dt, A, B, C, state):
    """One token of the recurrence: x (b, h, p), dt (b, h), B and C (b, h, n), state (b, h, p, n).
    Returns y (b, h, p) without the D skip, and the new state."""
    state = state * torch.exp(dt * A)[..., None, None] + (dt[..., None] * x)[..., None] * B[:, :, None]
    return torch.einsum("bhpn,bhn->bhp", state, C), state


class Mamba2Mixer(nn.Module):
    """The SSD layer with attention's forward signature (explorer.model.contracts).

    Names as transformers': ``in_proj`` (emb_dim -> inner + conv_dim + heads, rows z, xBC, dt),
    ``conv1d`` (depthwise over conv_dim = inner + 2 * n_groups * d_state channels), ``dt_bias``,
    ``A_log``, ``D`` (one per head), ``norm`` (gated, ``weight`` of inner), ``out_proj``.

    For the analyses: ``n_heads`` SSM heads of ``head_dim``, no keys or values
    (``n_kv_heads`` 0, ``kv_values_per_token`` 0), and ``state_values_per_sequence``: what one
    sequence carries whatever its length, the convolution's last conv_kernel - 1 inputs plus a
    (head_dim, d_state) state per head.
    """

    n_kv_heads = 0
    window = 0
    kv_values_per_token = 0

    def __init__(self, ctx, heads, expand, head_dim, d_state, n_groups, conv_kernel, chunk_size,
                 conv_bias, bias, norm_eps, dt_min, dt_max, dt_floor, dt_limit_min, dt_limit_max):
        super().__init__()
        d = ctx.config.emb_dim
        self.n_heads = heads or expand * d // head_dim
        self.head_dim, self.d_state, self.n_groups = head_dim, d_state, n_groups
        self.inner = self.n_heads * head_dim
        self.conv_kernel, self.chunk_size = conv_kernel, chunk_size
        self.dt_limit = (dt_limit_min, dt_limit_max or math.inf)
        self.conv_dim = self.inner + 2 * n_groups * d_state
        self.state_values_per_sequence = (self.conv_dim * (conv_kernel - 1)
                                          + self.n_heads * head_dim * d_state)
        self.in_proj = nn.Linear(d, self.inner + self.conv_dim + self.n_heads, bias=bias)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, conv_kernel, groups=self.conv_dim,
                                bias=conv_bias)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.n_heads + 1, dtype=torch.float)))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        # dt_bias: softplus^-1 of steps drawn log-uniformly in [dt_min, dt_max] (Mamba's init).
        steps = torch.exp(torch.rand(self.n_heads) * (math.log(dt_max) - math.log(dt_min))
                          + math.log(dt_min)).clamp(min=dt_floor)
        self.dt_bias = nn.Parameter(steps + torch.log(-torch.expm1(-steps)))
        self.norm = GatedRMSNorm(self.inner, self.inner // n_groups, norm_eps)
        self.out_proj = nn.Linear(self.inner, d, bias=bias)

    def new_cache(self, max_len):
        return RecurrentState(max_len)

    def forward(self, x, pos, positions, cache=None):
        b, t, _ = x.shape
        z, xbc, dt = self.in_proj(x).split([self.inner, self.conv_dim, self.n_heads], dim=-1)
        saved = cache.tensors if cache is not None else {}
        xbc, conv_state = self._convolve(xbc, saved.get("conv"))
        xs, B, C = xbc.split([self.inner, self.n_groups * self.d_state,
                              self.n_groups * self.d_state], dim=-1)
        xs = xs.view(b, t, self.n_heads, self.head_dim).float()  # (B, T, h, p)
        per_group = self.n_heads // self.n_groups
        B = B.view(b, t, self.n_groups, self.d_state).float().repeat_interleave(per_group, dim=2)
        C = C.view(b, t, self.n_groups, self.d_state).float().repeat_interleave(per_group, dim=2)
        dt = F.softplus(dt.float() + self.dt_bias).clamp(*self.dt_limit)  # (B, T, h)
        A = -torch.exp(self.A_log.float())  # (h,)
        state = saved.get("ssm")
        if state is None:
            state = xs.new_zeros(b, self.n_heads, self.head_dim, self.d_state)
        if cache is not None and t == 1:  # generation: the recurrence, one token
            y, state = ssd_step(xs[:, 0], dt[:, 0], A, B[:, 0], C[:, 0], state)
            y = y[:, None]  # (B, 1, h, p)
        else:
            y, state = ssd_chunked(xs, dt, A, B, C, self.chunk_size, state)
        y = y + self.D.float()[:, None] * xs  # the D skip
        if cache is not None:
            cache.tensors.update(conv=conv_state, ssm=state)
            cache.advance(t)
        y = self.norm(y.reshape(b, t, self.inner).to(x.dtype), z)
        return self.out_proj(y)

    def _convolve(self, xbc, state):
        """Causal depthwise convolution (plus its bias) and SiLU over xbc (B, T, conv_dim), after
        ``state`` (the previous conv_kernel - 1 inputs, (B, K - 1, conv_dim); zeros at the
        start). Returns the output (B, T, conv_dim) and the new state."""
        out, state = causal_conv(xbc, self.conv1d.weight, state)
        if self.conv1d.bias is not None:
            out = out + self.conv1d.bias
        return F.silu(out), state

    def recurrent(self, x):
        """Run ``x`` (B, T, emb_dim) one token at a time through the recurrence (a reference for
        the chunked form; what generation does)."""
        state = self.new_cache(x.shape[1])
        return torch.cat([self(x[:, i:i + 1], None, None, cache=state)
                          for i in range(x.shape[1])], dim=1)

    def explorer_flops(self, batch, seq_len):
        """Forward FLOPs (2 per multiply-add) of the chunked scan that no weight matrix accounts
        for, for ``batch`` sequences of ``seq_len`` (explorer.model.contracts): within chunks the
        C.B scores and their use on x (a chunk's length per token), the chunk-end states, the
        recurrence across chunk ends, and each chunk start's state read by C."""
        h, p, n, length = self.n_heads, self.head_dim, self.d_state, self.chunk_size
        chunks = -(-seq_len // length)
        padded = chunks * length  # the scan pads the last chunk with zeros
        within = padded * length * h * (n + p)  # scores C.B, then scores . x
        states = 2 * padded * h * p * n  # chunk-end states, and C . start state
        across = (chunks + 1) ** 2 * h * p * n  # the recurrence between chunk ends
        return 2 * batch * (within + states + across)
