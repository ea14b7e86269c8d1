"""Text samples: continuations of prompts, greedy by default (the book's generate_text_simple)."""

from explorer import Analysis, Param, ParamError, hookimpl


def samples(ctx, prompts, max_new_tokens, temperature, top_k, top_p):
    import torch  # here, not at the top: registering this plugin must not import torch
    from explorer.model.generation import generate
    from explorer.measure.numerics import nonfinite_report

    tok = ctx.tokenizer()
    encoded = [ctx.encode(prompt) for prompt in prompts]
    ctx.require(_need(ctx, max((len(ids) for ids in encoded), default=0), max_new_tokens))
    model = ctx.model()
    out, fault = [], None
    with ctx.mode(model, train=False), ctx.autocast():
        for prompt, ids in zip(prompts, encoded):
            prompt_ids = torch.tensor([ids], device=ctx.device)
            with torch.no_grad():
                fault = fault or nonfinite_report(model, prompt_ids, model(prompt_ids))
            result = generate(model, prompt_ids, max_new_tokens, temperature=temperature,
                              top_k=top_k or None, top_p=top_p, seed=ctx.spec.seed)[0].tolist()
            out.append({"prompt": prompt, "token_ids": result, "text": tok.decode(result)})
    mode = "greedy" if temperature == 0 else f"temperature {temperature}"
    result = {"decoding": mode, "max_new_tokens": max_new_tokens, "samples": out}
    if fault:
        result["nonfinite"] = fault  # the samples are garbage: say so, and where it starts
    return result


def _need(ctx, prompt_tokens, max_new_tokens):
    """The weights, the longest prompt's logits and a KV cache for prompt and continuation."""
    from explorer.measure.resources import logits_bytes_per_token, weight_bytes
    from explorer.model.kv_cache import cache_layout
    from explorer.measure.resources import Need, Part

    model = ctx.compact_model()
    tokens = min(prompt_tokens + max_new_tokens, ctx.spec.model.context_length)
    cache = sum(layer["values_per_token"] * min(layer["window"] or tokens, tokens)
                + layer["state_values_per_sequence"]  # a linear-time mixer's fixed state
                for layer in cache_layout(model)) * next(model.parameters()).element_size()
    return Need("samples", (Part("weights", weight_bytes(model)),),
                "shorten analyses.samples.prompts or lower analyses.samples.max_new_tokens", ((
                    Part("logits", prompt_tokens * logits_bytes_per_token(ctx.spec, model)),
                    Part("KV cache", cache, note=f"for {tokens} tokens")),))


def render(result):
    lines = [f"{result['decoding']}, {result['max_new_tokens']} new tokens"]
    for s in result["samples"]:
        lines.append(f"{s['text']!r}")
        lines.append(f"  ids {s['token_ids']}")
    return "\n".join(lines)


def figures(result):
    """The text each prompt was continued with (compare shows its start; JSON has it whole)."""
    out = {}
    for i, sample in enumerate(result["samples"]):
        text, prompt = sample["text"], sample["prompt"]
        key = "continuation" if i == 0 else f"continuation.{i}"
        out[key] = text[len(prompt):] if text.startswith(prompt) else text
    return out


def prompts_are_text(config, options):
    for i, prompt in enumerate(options["prompts"]):
        if not isinstance(prompt, str) or not prompt:
            raise ParamError("prompts", f"prompt {i} is {prompt!r}, not text",
                             'a list of non-empty strings, e.g. ["Hello, I am"]')


@hookimpl
def explorer_analyses():
    return [Analysis(
        name="samples", run=samples, render=render, figures=figures,
        description="Continuations of prompts (greedy by default), decoded, with token ids.",
        params=(Param("prompts", list, ["Hello, I am"], "the prompts to continue"),
                Param("max_new_tokens", int, 6, "tokens to generate per prompt", min=0),
                Param("temperature", float, 0.0, "0 is greedy; > 0 samples", min=0),
                Param("top_k", int, 0, "sample only from the k likeliest tokens (0: all)", min=0),
                Param("top_p", float, 1.0, "nucleus sampling: the smallest set with this mass",
                      min=0, max=1, exclusive_min=True)),
        check=prompts_are_text,
    )]
