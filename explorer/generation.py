"""Text generation: the book's ``generate_text_simple`` loop, plus temperature/top-k/top-p sampling."""

import torch


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


@torch.no_grad()
def generate(model, idx, max_new_tokens, context_size=None, temperature=0.0, top_k=None,
             top_p=None, seed=None):
    """Extend ``idx`` (B, T) by ``max_new_tokens`` tokens and return (B, T + max_new_tokens).

    With the defaults this is the book's greedy ``generate_text_simple``. Sampling
    (temperature > 0) draws from its own generator seeded with ``seed``, so it is reproducible
    and does not disturb the global random stream.
    """
    context_size = context_size or model.config.context_length
    generator = None
    if temperature > 0:
        generator = torch.Generator(device=idx.device)
        generator.manual_seed(0 if seed is None else seed)
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]
        logits = model(idx_cond)[:, -1, :]  # (B, V): only the last position predicts
        idx = torch.cat((idx, _pick(logits, temperature, top_k, top_p, generator)), dim=1)
    return idx
