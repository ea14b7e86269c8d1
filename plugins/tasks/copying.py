"""Copying tasks: selective copying (MAD) and induction (a repeated random block)."""

import torch

from explorer import ParamError
from explorer.training.tasks import IGNORE, SyntheticTask

BLANK, SEPARATOR = 0, 1


class SelectiveCopy(SyntheticTask):
    """A region of blanks with ``n_tokens`` data tokens scattered in it, a separator, then the
    data tokens in order: the loss is on predicting each of them (at the separator, the first;
    at each copied token, the next)."""

    def __init__(self, n_tokens, region, n_symbols, train_examples):
        if n_tokens > region:
            raise ParamError("n_tokens", f"{n_tokens} tokens do not fit a region of {region}",
                             f"at most region ({region})")
        self.n_tokens, self.region, self.n_symbols = n_tokens, region, n_symbols
        self.train_examples = train_examples
        self.vocab_size_needed = 2 + n_symbols
        self.seq_len_needed = region + 1 + n_tokens
        self.chance = 1 / n_symbols

    def at_length(self, length):
        """A longer (or shorter) region: as many tokens to copy, spread further apart."""
        region = length - 1 - self.n_tokens
        if region < self.n_tokens:
            raise ValueError(f"{self.n_tokens} tokens, a separator and their copy need at least "
                             f"{2 * self.n_tokens + 1} tokens")
        return self.stretched(region=region, seq_len_needed=length)

    def sample(self, generator, n, state):
        data = 2 + torch.randint(0, self.n_symbols, (n, self.n_tokens), generator=generator)
        where = torch.rand(n, self.region, generator=generator).argsort(dim=1)[:, :self.n_tokens]
        where = where.sort(dim=1).values
        region = torch.full((n, self.region), BLANK, dtype=torch.long)
        region.scatter_(1, where, data)
        separator = torch.full((n, 1), SEPARATOR, dtype=torch.long)
        inputs = torch.cat([region, separator, data], dim=1)
        targets = torch.full_like(inputs, IGNORE)
        targets[:, self.region: self.region + self.n_tokens] = data  # sep -> d1, d_i -> d_i+1
        return inputs, targets


class Induction(SyntheticTask):
    """``prefix_len`` distinct random tokens, then the same again: within the repeat each token
    is followed by what followed its previous occurrence."""

    def __init__(self, prefix_len, n_symbols, train_examples):
        if prefix_len > n_symbols:
            raise ParamError("prefix_len", f"{prefix_len} distinct tokens of {n_symbols} "
                             "symbols", f"at most n_symbols ({n_symbols})")
        self.prefix_len, self.n_symbols = prefix_len, n_symbols
        self.train_examples = train_examples
        self.vocab_size_needed = n_symbols
        self.seq_len_needed = 2 * prefix_len
        self.chance = 1 / n_symbols

    def at_length(self, length):
        """A longer (or shorter) block: more tokens to copy, each further from its first
        occurrence."""
        if length % 2 or not 2 <= length // 2 <= self.n_symbols:
            raise ValueError(f"a block of distinct tokens and its repeat: even lengths 4 to "
                             f"{2 * self.n_symbols}")
        return self.stretched(prefix_len=length // 2, seq_len_needed=length)

    def sample(self, generator, n, state):
        block = torch.rand(n, self.n_symbols, generator=generator).argsort(dim=1)
        block = block[:, :self.prefix_len]
        inputs = torch.cat([block, block], dim=1)
        targets = torch.full_like(inputs, IGNORE)
        start = self.prefix_len  # the repeat's first token follows nothing seen: no loss
        targets[:, start: 2 * self.prefix_len - 1] = block[:, 1:]
        return inputs, targets
