"""Text samples: continuations of prompts, greedy by default (the book's generate_text_simple)."""

from explorer import Analysis, Param, ParamError, hookimpl


def samples(ctx, prompts, max_new_tokens, temperature, top_k, top_p):
    import torch  # here, not at the top: registering this plugin must not import torch
    from explorer.generation import generate
    from explorer.numerics import nonfinite_report

    model = ctx.model()
    tok = ctx.tokenizer()
    was_training = model.training
    model.eval()
    out, fault = [], None
    for prompt in prompts:
        ids = ctx.encode(prompt)
        with torch.no_grad():
            fault = fault or nonfinite_report(model, torch.tensor([ids]), model(torch.tensor([ids])))
        result = generate(model, torch.tensor([ids]), max_new_tokens,
                          temperature=temperature, top_k=top_k or None, top_p=top_p,
                          seed=ctx.spec.seed)[0].tolist()
        out.append({"prompt": prompt, "token_ids": result, "text": tok.decode(result)})
    model.train(was_training)
    mode = "greedy" if temperature == 0 else f"temperature {temperature}"
    result = {"decoding": mode, "max_new_tokens": max_new_tokens, "samples": out}
    if fault:
        result["nonfinite"] = fault  # the samples are garbage: say so, and where it starts
    return result


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
