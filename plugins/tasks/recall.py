"""Recall tasks: in-context (multi-query associative) recall, its fuzzy and noisy variants, and
memorization of a fixed table.

Token ids: 0 is the blank, then the key symbols, the value symbols and the noise symbols, each
a range of its own, so a model can tell them apart from the id alone. A pair is a key's tokens
followed by its value's; then as many queries, each a key of the sequence drawn at random
(with replacement, so that no query can be answered by elimination), followed by its value. The loss is on the predictions of the value tokens of the queries: at
the last key token (the first value token, which only the context tells) and at each value
token but the last (the rest of the value). As in Zoology's MQAR the pairs come first and the
queries after; as in MAD the query's value follows it in the input (teacher forcing).
"""

import math

import torch

from explorer import ParamError
from explorer.training.tasks import IGNORE, SyntheticTask

BLANK = 0


def recall(n_pairs, n_keys, n_values, gap, train_examples):
    return Recall(n_pairs, n_keys, n_values, gap, train_examples, 1, 1, 0.0, 1)


def fuzzy_recall(n_pairs, n_keys, n_values, key_len, value_len, gap, train_examples):
    return Recall(n_pairs, n_keys, n_values, gap, train_examples, key_len, value_len, 0.0, 1)


def noisy_recall(n_pairs, n_keys, n_values, noise, n_noise_symbols, gap, train_examples):
    return Recall(n_pairs, n_keys, n_values, gap, train_examples, 1, 1, noise, n_noise_symbols)


class Recall(SyntheticTask):
    """recall, fuzzy_recall and noisy_recall: one generator (the factories above)."""

    def __init__(self, n_pairs, n_keys, n_values, gap, train_examples, key_len, value_len,
                 noise, n_noise_symbols):
        if n_keys ** key_len < n_pairs:
            raise ParamError("n_pairs", f"{n_pairs} distinct keys of {key_len} token(s) from "
                             f"{n_keys} symbols do not exist",
                             f"at most {n_keys ** key_len} pairs, or more n_keys")
        self.n_pairs, self.n_keys, self.n_values, self.gap = n_pairs, n_keys, n_values, gap
        self.key_len, self.value_len, self.train_examples = key_len, value_len, train_examples
        self.pair_len = key_len + value_len
        pair_tokens = 2 * n_pairs * self.pair_len  # the pairs, then the queries
        self.n_noise = math.floor(noise / (1 - noise) * pair_tokens + 0.5)
        self.n_noise_symbols = n_noise_symbols
        self.value_base = 1 + n_keys
        self.noise_base = self.value_base + n_values
        self.vocab_size_needed = self.noise_base + (n_noise_symbols if self.n_noise else 0)
        self.seq_len_needed = pair_tokens + self.n_noise + gap
        self.chance = 1 / n_values

    def at_length(self, length):
        """A longer (or shorter) gap between the pairs and the queries: the same pairs and
        queries from the same stream, each query further from its key."""
        shortest = self.seq_len_needed - self.gap
        if length < shortest:
            raise ValueError(f"its {self.n_pairs} pairs and queries take {shortest} tokens")
        return self.stretched(gap=length - shortest, seq_len_needed=length)

    def _keys(self, generator, n):
        """(n, n_pairs, key_len) token ids: distinct keys within each sequence."""
        space = self.n_keys ** self.key_len
        if space <= 1 << 16:
            codes = torch.rand(n, space, generator=generator).argsort(dim=1)[:, :self.n_pairs]
        else:  # too many keys to permute: draw, and redraw a sequence that repeats one
            codes = torch.randint(0, space, (n, self.n_pairs), generator=generator)
            for row in codes:
                while len(set(row.tolist())) < self.n_pairs:
                    row.copy_(torch.randint(0, space, (self.n_pairs,), generator=generator))
        digits = self.n_keys ** torch.arange(self.key_len)
        return 1 + (codes[..., None] // digits) % self.n_keys

    def sample(self, generator, n, state):
        keys = self._keys(generator, n)  # (n, P, kl)
        values = self.value_base + torch.randint(
            0, self.n_values, (n, self.n_pairs, self.value_len), generator=generator)
        pairs = torch.cat([keys, values], dim=2)  # (n, P, kl + vl)
        # Each query a key of the pairs drawn with replacement: were every key queried once,
        # the last query could be answered by elimination, without recall.
        queries = torch.randint(0, self.n_pairs, (n, self.n_pairs), generator=generator)
        noise = self.noise_base + torch.randint(0, self.n_noise_symbols, (n, self.n_noise),
                                                generator=generator)
        # Where the noise goes: each noise token picks a slot between units (pairs / queries).
        slots = torch.randint(0, 2 * self.n_pairs + 1, (n, self.n_noise), generator=generator)
        inputs = torch.full((n, self.seq_len_needed), BLANK, dtype=torch.long)
        targets = torch.full_like(inputs, IGNORE)
        for i in range(n):
            self._lay_out(inputs[i], targets[i], pairs[i], queries[i], noise[i], slots[i])
        return inputs, targets

    def _lay_out(self, tokens, targets, pairs, queries, noise, slots):
        """Pairs, blanks, queries, with noise tokens in the slots drawn for them."""
        units = [pairs[p] for p in range(self.n_pairs)] + [None] + \
                [pairs[q] for q in queries.tolist()]
        placed = [[] for _ in range(2 * self.n_pairs + 1)]
        for token, slot in zip(noise.tolist(), slots.tolist()):
            placed[slot].append(token)
        at, query = 0, False
        for index, unit in enumerate(units):
            if unit is None:  # between the pairs and the queries
                at += self.gap
                query = True
                continue
            slot = index if index < self.n_pairs else index - 1
            for token in placed[slot]:
                tokens[at] = token
                at += 1
            tokens[at: at + self.pair_len] = unit
            if query:  # the value's tokens, predicted from the last key token on
                first = at + self.key_len - 1
                targets[first: first + self.value_len] = unit[self.key_len:]
            at += self.pair_len
        for token in placed[2 * self.n_pairs]:
            tokens[at] = token
            at += 1


class Memorization(SyntheticTask):
    """Sequences of key-value facts from one table the seed fixes: a value is never in the
    context before it is asked for, so only the weights can hold it. A key of ``key_len`` > 1
    tokens (from the fewest symbols that write ``n_facts`` keys) makes the value a function of
    several tokens: a lookup the embeddings alone cannot do."""

    def __init__(self, n_facts, n_values, n_pairs, key_len):
        if n_pairs > n_facts:
            raise ParamError("n_pairs", f"{n_pairs} distinct facts per sequence of {n_facts}",
                             f"at most n_facts ({n_facts})")
        self.n_facts, self.n_values, self.n_pairs, self.key_len = n_facts, n_values, n_pairs, \
            key_len
        self.n_symbols = math.ceil(n_facts ** (1 / key_len) - 1e-9)
        while self.n_symbols ** key_len < n_facts:  # float roots can fall short by one
            self.n_symbols += 1
        self.value_base = 1 + self.n_symbols
        self.vocab_size_needed = self.value_base + n_values
        self.seq_len_needed = (key_len + 1) * n_pairs
        self.train_examples = 0  # the training set is the table: n_facts
        self.chance = 1 / n_values

    def at_length(self, length):
        """More (or fewer) facts per sequence, from the same table."""
        step = self.key_len + 1
        if length % step or not 1 <= length // step <= self.n_facts:
            raise ValueError(f"sequences are facts of {step} tokens: lengths {step} to "
                             f"{step * self.n_facts} in steps of {step}")
        return self.stretched(n_pairs=length // step, seq_len_needed=length)

    def setup(self, generator):
        """The facts: ``n_facts`` distinct keys (n_facts, key_len) and their values."""
        space = self.n_symbols ** self.key_len
        codes = torch.randperm(space, generator=generator)[:self.n_facts]
        digits = self.n_symbols ** torch.arange(self.key_len)
        keys = 1 + (codes[:, None] // digits) % self.n_symbols
        values = self.value_base + torch.randint(0, self.n_values, (self.n_facts,),
                                                 generator=generator)
        return keys, values

    def sample(self, generator, n, table):
        keys, values = table
        facts = torch.rand(n, self.n_facts, generator=generator).argsort(dim=1)[:, :self.n_pairs]
        inputs = torch.cat([keys[facts], values[facts][..., None]], dim=2).flatten(1)
        targets = torch.full_like(inputs, IGNORE)
        step = self.key_len + 1  # k.. v k.. v: at each key's last token, its value
        targets[:, self.key_len - 1::step] = inputs[:, self.key_len::step]
        return inputs, targets
