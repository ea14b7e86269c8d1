"""Text generation: the book's ``generate_text_simple`` loop, plus temperature/top-k/top-p sampling.

With ``use_cache=True`` (the default) each step feeds the model only the newest token and a KV
cache (explorer.model.kv_cache) supplies the earlier keys and values; the output head runs on the
last position only. The tokens are the same as the book's recompute-everything loop, which
``use_cache=False`` keeps.

Past the context: the book crops the input to its last ``context_size`` tokens, so once the
sequence is longer every position shifts and no cached key is valid any more (learned and
sinusoidal positions change, and with any scheme the dropped first token changed every later
layer's keys). Generation then does what the book does, a full forward over the cropped context
per token, and the tokens stay identical to ``use_cache=False``.
"""

import os

import torch

from explorer.errors import ExplorerError


def _pick(logits, temperature, top_k, top_p, generator):
    """Choose the next token from ``logits`` (B, V): argmax when temperature is 0."""
    if temperature == 0:
        return torch.argmax(logits, dim=-1, keepdim=True)  # (B, 1)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # Drop a token once the tokens before it already cover top_p; the first always stays.
        drop = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, -torch.inf))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)


def check_sampling(max_new_tokens, temperature=0.0, top_k=None, top_p=None):
    """Raise ExplorerError, with the bad value, for settings no sampler can use."""
    if max_new_tokens < 0:
        raise ExplorerError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not temperature >= 0:  # also refuses NaN
        raise ExplorerError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 0:
        raise ExplorerError(f"top_k must be >= 1 (or 0/None for all tokens), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ExplorerError(f"top_p must be in (0, 1], got {top_p}")


def generate_stream(model, idx, max_new_tokens, context_size=None, temperature=0.0, top_k=None,
                    top_p=None, seed=None, use_cache=True):
    """An iterator over the ``max_new_tokens`` tokens that extend ``idx`` (B, T), each (B, 1).

    Each token is yielded as soon as it is chosen, so a caller can print it while the next one
    is computed. The arguments are :func:`generate`'s; bad ones raise here, not on first use.
    """
    check_sampling(max_new_tokens, temperature, top_k, top_p)
    return _stream(model, idx, max_new_tokens, context_size, temperature, top_k, top_p, seed,
                   use_cache)


@torch.no_grad()
def _stream(model, idx, max_new_tokens, context_size, temperature, top_k, top_p, seed, use_cache):
    context_size = context_size or model.config.context_length
    generator = None
    if temperature > 0:
        generator = torch.Generator(device=idx.device)
        generator.manual_seed(0 if seed is None else seed)
    cache = None
    if use_cache and max_new_tokens:
        from explorer.model.kv_cache import ModelCache

        max_len = min(context_size, model.config.context_length, idx.shape[1] + max_new_tokens)
        cache = ModelCache.for_model(model, max_len)
    pending = idx  # the tokens the cache has not seen yet: the prompt, then the newest token
    for _ in range(max_new_tokens):
        if cache is not None and cache.offset + pending.shape[1] <= cache.max_len:
            logits = model(pending, cache=cache, last_only=True)[:, -1, :]  # (B, V)
        else:  # past the context (or no cache): the book's crop and full forward
            cache = None
            logits = model(idx[:, -context_size:], last_only=True)[:, -1, :]
        pending = _pick(logits, temperature, top_k, top_p, generator)  # (B, 1)
        idx = torch.cat((idx, pending), dim=1)
        yield pending


def generate(model, idx, max_new_tokens, context_size=None, temperature=0.0, top_k=None,
             top_p=None, seed=None, use_cache=True):
    """Extend ``idx`` (B, T) by ``max_new_tokens`` tokens and return (B, T + max_new_tokens).

    With the defaults this is the book's greedy ``generate_text_simple``: the input is cropped
    to its last ``context_size`` tokens (default: the model's context_length) at every step.
    Sampling (temperature > 0, optionally restricted to the ``top_k`` likeliest tokens or the
    smallest set with probability ``top_p``) draws from its own generator seeded with ``seed``,
    so it is reproducible and does not disturb the global random stream. ``use_cache=False``
    recomputes the whole context for every token, as the book does; the tokens are the same.
    """
    new = list(generate_stream(model, idx, max_new_tokens, context_size, temperature, top_k,
                               top_p, seed, use_cache))
    return torch.cat((idx, *new), dim=1)


class TextStream:
    """Text for a stream of token ids, decoding only the newest tokens, never the whole sequence.

    ``add(token_id)`` returns the text to show now. A BPE token can end inside a multi-byte UTF-8
    character (its text then ends in U+FFFD): it is held back, and shown with the tokens that
    complete it, at most ``MAX_HELD`` tokens later (a character has at most 4 bytes). Each new
    piece is decoded together with the previous piece and cut after it, as text-generation-
    inference does, so a decoder whose output depends on the tokens before (one that drops a
    leading space at the start of a text) gives what decoding the whole sequence gives.
    ``close()`` returns whatever is still held.
    """

    MAX_HELD = 3

    def __init__(self, decode):
        self.decode = decode
        self.shown = []  # the ids of the piece shown last: decoded again, as context
        self.pending = []  # the ids not shown yet

    def add(self, token_id):
        self.pending.append(token_id)
        text = self.decode(self.shown + self.pending)
        if text.endswith("\ufffd") and len(self.pending) <= self.MAX_HELD:
            return ""
        return self._take(text)

    def close(self):
        return self._take(self.decode(self.shown + self.pending)) if self.pending else ""

    def _take(self, text):
        """The part of ``text`` (the last piece and the pending tokens) after the last piece."""
        shown = self.decode(self.shown)
        self.shown, self.pending = self.pending, []
        # Past a character given up on after MAX_HELD tokens the two may differ: cut where they do.
        return text[len(os.path.commonprefix([shown, text])):]
