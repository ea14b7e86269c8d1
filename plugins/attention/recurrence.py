"""What the recurrent token mixers share (imported only when building): the decayed linear
recurrence in its chunked and its token-by-token form, and the short causal convolution.

The decayed linear recurrence, per batch and head, with a state S (d_k, d_v) and a log-decay
g_t <= 0 per token:

    S_t = exp(g_t) * S_{t-1} + k_t v_t^T        o_t = S_t^T q_t

The chunked form computes the same outputs C tokens at a time: inside a chunk as masked
attention, (q k^T * L) v with L[i, j] = exp(g_{j+1} + ... + g_i) for j <= i (else 0), plus what
the state carried into the chunk gives, exp(g_1 + ... + g_i) q_i^T S; then the state jumps over
the whole chunk. Its multiply-adds are matrix products (FlopCounterMode counts them), which is
why training uses it; generation steps the recurrence one token at a time.
"""

import math

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import register_flop_formula


def chunks(t, chunk_size):
    """``(size, count)`` of the chunks ``t`` tokens are cut into: ``chunk_size`` each (or ``t``,
    when shorter), the last padded."""
    size = min(chunk_size, t)
    return size, -(-t // size)


def into_chunks(x, size, count):
    """x (B, H, T, ...) padded with zeros to ``size * count`` tokens and cut into
    (B, H, count, size, ...). Padding is exact for these recurrences: a padded token has
    k = v = 0 (no write) and log-decay 0 (no decay), so outputs and state are unchanged."""
    t = x.shape[2]
    pad = size * count - t
    if pad:
        x = F.pad(x, (0, 0) * (x.dim() - 3) + (0, pad))
    return x.reshape(*x.shape[:2], count, size, *x.shape[3:])


# In the chunked forms (here, deltanet.py's and mamba2.py's), decays below exp(-20) (about
# 2e-9) are taken as exactly 0: what they would add is below float32's resolution (1.2e-7) next
# to the undecayed term every output has (its own token's). Kept, they and their products (a
# chunk multiplies two or three of them) become subnormal floats, which CPUs multiply tens of
# times slower: with Qwen3-Next's decay rates (log-decays down to about -20 per token) a
# 256-wide gated-DeltaNet layer's forward and backward took 150 ms instead of 91 (2 cores). The
# token-by-token forms keep exact decays, so the tests that compare the two forms check this.
NEGLIGIBLE_LOG_DECAY = -20.0


def decay(log_decay):
    """exp(log_decay), with log-decays below ``NEGLIGIBLE_LOG_DECAY`` giving exactly 0."""
    return log_decay.masked_fill(log_decay < NEGLIGIBLE_LOG_DECAY, -torch.inf).exp()


def decay_within(g):
    """From log-decays ``g`` (..., c): the running sums (..., c) and the mask of decays
    L (..., c, c), L[i, j] = exp(sum of g over j+1..i) for j <= i, else 0."""
    cum = g.cumsum(-1)  # (..., c)
    pairwise = cum.unsqueeze(-1) - cum.unsqueeze(-2)  # (..., c, c): i minus j
    c = g.shape[-1]
    upper = torch.ones(c, c, dtype=torch.bool, device=g.device).triu(1)
    return cum, decay(pairwise.masked_fill(upper, -torch.inf))


def chunked_linear(q, k, v, g, state, chunk_size):
    """The decayed linear recurrence (module docstring) over q, k (B, H, T, dk), v (B, H, T, dv)
    and log-decays g (B, H, T) (None: no decay), from ``state`` (B, H, dk, dv); returns the
    outputs (B, H, T, dv) and the state after the last token. What stays inside a chunk is
    computed for all chunks at once; only the state's passage runs chunk by chunk."""
    t = q.shape[2]
    size, count = chunks(t, chunk_size)
    q, k, v = (into_chunks(x, size, count) for x in (q, k, v))  # (B, H, n, c, d)
    scores = q @ k.transpose(-1, -2)  # (B, H, n, c, c)
    if g is None:
        scores = scores.tril()
        k_decayed, chunk_decay = k, None
    else:
        cum, within = decay_within(into_chunks(g, size, count))  # (B, H, n, c), (..., c, c)
        scores = scores * within
        last = cum[..., -1:]  # (B, H, n, 1): each chunk's whole log-decay
        q = q * decay(cum).unsqueeze(-1)
        k_decayed = k * decay(last - cum).unsqueeze(-1)
        chunk_decay = decay(last).unsqueeze(-1)  # (B, H, n, 1, 1)
    out = scores @ v  # (B, H, n, c, dv): inside each chunk
    carried = []
    for i in range(count):
        carried.append(q[:, :, i] @ state)  # what the state brings into chunk i
        decayed = state if chunk_decay is None else state * chunk_decay[:, :, i]
        state = decayed + k_decayed[:, :, i].transpose(-1, -2) @ v[:, :, i]
    out = out + torch.stack(carried, dim=2)
    return out.flatten(2, 3)[:, :, :t], state


def recurrent_linear(q, k, v, g, state):
    """The same recurrence one token at a time (generation): same arguments and results as
    :func:`chunked_linear`."""
    out = []
    for i in range(q.shape[2]):
        if g is not None:
            state = state * g[:, :, i].exp()[..., None, None]
        state = state + k[:, :, i].unsqueeze(-1) * v[:, :, i].unsqueeze(-2)  # + k v^T
        out.append((state * q[:, :, i].unsqueeze(-1)).sum(-2))  # S^T q: (B, H, dv)
    return torch.stack(out, dim=2), state


def chunked_linear_flops(t, chunk_size, dk, dv):
    """FLOPs (2 per multiply-add) of :func:`chunked_linear` per batch and head, over its
    (padded) chunks of c tokens: q k^T (c*c*dk), scores @ v (c*c*dv), q @ S and k^T @ v
    (c*dk*dv each)."""
    c, n = chunks(t, chunk_size)
    return 2 * n * (c * c * (dk + dv) + 2 * c * dk * dv)


# The depthwise causal convolution as K shifted multiply-adds, in place, forward and backward,
# over the channels-last layout the projections produce: for kernels this short conv1d's
# forward (with its transposes) and above all its backward, and autograd through shifted
# slices, each took two to five times as long on CPU (a 768-channel gated-DeltaNet convolution
# at 4 x 512 tokens, 2 cores). They are torch custom ops so that FlopCounterMode counts them
# (its formulas below: what conv1d's would give) and the meta device can run them.

@torch.library.custom_op("explorer::causal_conv", mutates_args=())
def _shifted_conv(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """x (B, T, C) by taps (K, C), zeros before the first token:
    out[t] = sum_j taps[j] * x[t + j - K + 1]."""
    out = x * taps[-1]
    for shift in range(1, taps.shape[0]):
        out[:, shift:].addcmul_(x[:, :-shift], taps[-1 - shift])
    return out


@torch.library.custom_op("explorer::causal_conv_backward", mutates_args=())
def _shifted_conv_backward(grad: torch.Tensor, x: torch.Tensor, taps: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of :func:`_shifted_conv` with respect to x and taps."""
    grad_x = grad * taps[-1]
    for shift in range(1, taps.shape[0]):
        grad_x[:, :-shift].addcmul_(grad[:, shift:], taps[-1 - shift])
    grad_taps = torch.stack([(grad[:, shift:] * x[:, :x.shape[1] - shift]).sum((0, 1))
                             for shift in reversed(range(taps.shape[0]))])
    return grad_x, grad_taps.to(taps.dtype)


@_shifted_conv.register_fake
def _(x, taps):
    return torch.empty_like(x)


@_shifted_conv_backward.register_fake
def _(grad, x, taps):
    return torch.empty_like(x), torch.empty_like(taps)


def _save_inputs(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad):
    return _shifted_conv_backward(grad.contiguous(), *ctx.saved_tensors)


_shifted_conv.register_autograd(_backward, setup_context=_save_inputs)


@register_flop_formula(torch.ops.explorer.causal_conv)
def _conv_flops(x_shape, taps_shape, *args, **kwargs):
    return 2 * math.prod(x_shape) * taps_shape[0]  # K multiply-adds per value


@register_flop_formula(torch.ops.explorer.causal_conv_backward)
def _conv_backward_flops(grad_shape, x_shape, taps_shape, *args, **kwargs):
    return 2 * _conv_flops(x_shape, taps_shape)  # one for the inputs', one for the taps' grads


def causal_conv(x, weight, conv_state):
    """Depthwise causal convolution of x (B, T, C) with ``weight`` (C, 1, K), continuing from
    ``conv_state`` (B, K - 1, C), the inputs before x (None: zeros, as at the start of a
    sequence). Returns the output (B, T, C) and the new conv state, the last K - 1 inputs."""
    keep = weight.shape[-1] - 1
    taps = weight[:, 0].t()  # (K, C)
    if conv_state is None:  # training: nothing before x
        last = x[:, max(0, x.shape[1] - keep):]
        return _shifted_conv(x, taps), F.pad(last, (0, 0, keep - last.shape[1], 0))
    padded = torch.cat((conv_state.to(x.dtype), x), dim=1)  # (B, K - 1 + T, C)
    return _shifted_conv(padded, taps)[:, keep:], padded[:, padded.shape[1] - keep:]
