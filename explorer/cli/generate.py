"""``explorer generate``: continue a prompt, streaming the text as it comes."""

import json
import sys
import unicodedata

import click

from .options import UserError, check_seed, device_options, format_option, ignore_config_option, \
    manager_with_plugins, plugins_option, spec_and_weights, torch_device, warn_broken, \
    weights_option


def _stdout_is_terminal():
    # A function of its own, so that a test can stand in for a terminal.
    return sys.stdout.isatty()


def terminal_safe(text):
    """``text`` with control characters (other than newline and tab) written as escapes, e.g.
    ``\\x01``: a model's raw bytes must not drive the terminal (ESC sequences, carriage returns)."""
    return "".join(c.encode("unicode_escape").decode("ascii")
                   if c not in "\n\t" and unicodedata.category(c) == "Cc" else c for c in text)


def _echo_piece(text, escape):
    if text:
        click.echo(terminal_safe(text) if escape else text, nl=False)
        sys.stdout.flush()


@click.command(name="generate")
@click.argument("spec_path", metavar="SPEC")
@click.option("--prompt", required=True, help="The text to continue.")
@click.option("--max-new-tokens", type=int, default=50, show_default=True,
              help="How many tokens to generate.")
@click.option("--temperature", type=float, default=0.0, show_default=True,
              help="0 is greedy (the book's generate_text_simple); > 0 samples.")
@click.option("--top-k", type=int, help="Sample only from the K likeliest tokens.")
@click.option("--top-p", type=float,
              help="Nucleus sampling: the smallest set of tokens with probability P, in (0, 1].")
@click.option("--seed", type=int, callback=check_seed,
              help="Seed for sampling, 0 to 2**63-1 (default: the spec's seed).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key for this run, e.g. model.n_layers=2. Repeatable.")
@format_option
@weights_option
@ignore_config_option
@plugins_option
@device_options("The weights' dtype while generating: float32, or bfloat16 / float16 (half "
                 "the memory, and faster where the device has 16-bit matmuls).")
@click.option("--compile", "compile_model", is_flag=True,
              help="Wrap the model in torch.compile (dynamic shapes): it compiles on the first "
                   "tokens, then runs faster; pays off on long generations.")
def generate_text(spec_path, prompt, max_new_tokens, temperature, top_k, top_p, seed, overrides,
                  fmt, weights, ignore_fields, plugins, device, dtype, compile_model):
    """Continue --prompt with the model SPEC describes, printing tokens as they come.

    Decoding uses a KV cache, so each token costs a forward of one position (past the context,
    the book's forward of the last context_length tokens). --format json prints the prompt, all
    token ids (prompt first) and the text at the end instead of streaming.

    Example:

        explorer generate specs/gpt2_small_openai.yaml --weights gpt2/ --prompt "Hello, I am"
    """
    from ..model.generation import check_sampling

    manager = manager_with_plugins(plugins)
    spec, weights = spec_and_weights(spec_path, overrides, manager, weights, ignore_fields)
    warn_broken(manager)
    check_sampling(max_new_tokens, temperature, top_k, top_p)  # before any model is built
    from ..model.tokenizer import get_tokenizer

    tok = get_tokenizer(spec.tokenizer, manager)
    ids = tok.encode(prompt, allowed_special={"<|endoftext|>"})
    cfg = spec.model
    if not ids:
        raise UserError("--prompt is empty: give at least one token of text")
    if max(ids) >= cfg.vocab_size:
        raise UserError(f"model.vocab_size {cfg.vocab_size} is too small for the {spec.tokenizer} "
                        f"tokenizer (token id {max(ids)} in the prompt); use vocab_size >= "
                        f"{tok.n_vocab}")
    if len(ids) > cfg.context_length:
        raise UserError(f"--prompt is {len(ids)} tokens, context_length is only "
                        f"{cfg.context_length}")

    device = torch_device(device)  # imports torch
    import contextlib

    import torch

    from ..analysis.runner import check_fits
    from ..training.compilation import compile_errors, compile_model as compiled
    from ..training.devices import torch_dtype
    from ..model.generation import TextStream, generate_stream
    from ..model.gpt import build_model, inference_layout
    from ..weights import load_model

    # Refuse before allocating the weights (a meta model has only shapes).
    check_fits(spec, build_model(spec, device="meta", compact=True), suggest_shape_analyses=False)
    # Built on the CPU, then moved and cast: the same seeded weights on every device.
    model = load_model(spec, weights).eval().to(device=device, dtype=torch_dtype(dtype))
    if device.type == "cpu":
        inference_layout(model)  # one token at a time: weights streamed in input order
    if compile_model:
        model = compiled(model, "--compile", dynamic=True)
    stream = generate_stream(model, torch.tensor([ids], device=device), max_new_tokens,
                             temperature=temperature, top_k=top_k, top_p=top_p,
                             seed=spec.seed if seed is None else seed)
    n_vocab = tok.n_vocab  # a vocab padded past the tokenizer's can emit ids it cannot decode

    def decode(token_ids):
        return tok.decode([i for i in token_ids if i < n_vocab])

    with compile_errors("--compile") if compile_model else contextlib.nullcontext():
        if fmt == "json":
            new = [int(token) for token in stream]
            click.echo(json.dumps({"prompt": prompt, "token_ids": ids + new,
                                   "text": decode(ids + new)}, indent=2))
            return
        # On a terminal control characters are shown escaped; piped output keeps the exact text.
        escape = _stdout_is_terminal()
        _echo_piece(prompt, escape)
        text = TextStream(decode)
        for token in stream:
            _echo_piece(text.add(int(token)), escape)
        _echo_piece(text.close(), escape)
    click.echo("")
