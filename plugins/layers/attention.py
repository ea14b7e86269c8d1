import torch
from torch import nn


class MultiHeadAttention(nn.Module):
    """The book's causal multi-head attention (section 3.6), with the positional hooks.

    The ``mask`` buffer is kept (and saved) as in the book, so its checkpoints load strictly.
    """

    def __init__(self, ctx):
        super().__init__()
        cfg = ctx.config
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.head_dim
        d = cfg.emb_dim
        self.W_query = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.W_key = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.W_value = nn.Linear(d, d, bias=cfg.qkv_bias)
        self.out_proj = nn.Linear(d, d)
        self.dropout = nn.Dropout(cfg.dropout.attention)
        self.register_buffer(
            "mask", torch.triu(torch.ones(cfg.context_length, cfg.context_length), diagonal=1))

    def forward(self, x, pos, positions):
        b, t, d = x.shape
        keys = self.W_key(x)  # (B, T, d)
        queries = self.W_query(x)
        values = self.W_value(x)
        keys = keys.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        queries = queries.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        values = values.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        queries, keys = pos.rotate(queries, keys, positions)

        scores = queries @ keys.transpose(2, 3)  # (B, nh, T, T)
        bias = pos.bias(positions, positions)
        if bias is not None:
            scores = scores + bias
        scores.masked_fill_(self.mask.bool()[:t, :t], -torch.inf)
        weights = torch.softmax(scores / keys.shape[-1] ** 0.5, dim=-1)
        weights = self.dropout(weights)

        context = (weights @ values).transpose(1, 2)  # (B, T, nh, hs)
        context = context.contiguous().view(b, t, d)
        return self.out_proj(context)
