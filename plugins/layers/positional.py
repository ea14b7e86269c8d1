import torch
from torch import nn
from torch.nn import functional as F

from explorer.contracts import PositionalEncoding


class LearnedPositional(PositionalEncoding):
    """GPT-2's learned position embedding: one trainable vector per position.

    Holds ``weight`` (context_length, emb_dim) initialised like ``nn.Embedding``, so the model's
    key is the book's ``pos_emb.weight`` and the random stream is consumed identically.
    """

    def __init__(self, ctx):
        super().__init__()
        cfg = ctx.config
        self.weight = nn.Parameter(torch.empty(cfg.context_length, cfg.emb_dim))
        nn.init.normal_(self.weight)

    def embed(self, x, positions):
        return x + F.embedding(positions, self.weight)  # (B, T, C) + (T, C)
