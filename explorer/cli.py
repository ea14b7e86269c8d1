"""The ``explorer`` command: a thin click layer over the Python API.

Torch is imported only inside the commands that build models, so ``explorer --help`` is quick.
"""

import json
import os
import sys

import click

from .errors import ExplorerError, one_line


class UserError(click.ClickException):
    """A one-line error about the user's input; exit code 2, no traceback."""

    exit_code = 2


def _plugins_option(f):
    return click.option(
        "-p", "--plugin", "plugins", multiple=True, metavar="MODULE|FILE.py",
        help="Load a plugin module (or a .py file) in addition to the installed ones. Repeatable.",
    )(f)


def _format_option(f):
    return click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                         show_default=True, help="Output format.")(f)


def _out_option(f):
    return click.option("--out", "out_path", metavar="FILE",
                        help="Write the output to FILE (atomically) instead of stdout.")(f)


def _emit(text, out_path):
    """Print, or write to --out through a temporary file and a rename (never a partial file)."""
    if out_path:
        from .atomic import write_text

        try:
            write_text(out_path, text + "\n")
        except OSError as exc:
            raise UserError(f"--out {out_path}: cannot write: {exc.strerror or exc}") from None
    else:
        click.echo(text)


def _weights_option(f):
    return click.option(
        "--weights", metavar="PATH",
        help="Load weights: a Hugging Face GPT-2 directory or file (model.safetensors, "
             "pytorch_model.bin), a book model.pth, or an explorer checkpoint.",
    )(f)


def _spec_and_weights(spec_path, overrides, manager, weights):
    """SPEC is a YAML spec, or an explorer checkpoint (.safetensors) that carries its spec and
    supplies the weights unless --weights is given."""
    if spec_path.endswith(".safetensors"):
        from .weights import spec_from_checkpoint

        return spec_from_checkpoint(spec_path, overrides, manager), weights or spec_path
    from .spec import load_spec

    return load_spec(spec_path, overrides=overrides, plugins=manager), weights


def _corpus_option(f):
    return click.option("--corpus", metavar="FILE",
                        help="Text file for the train analysis (sets analyses.train.corpus).")(f)


def _with_corpus(overrides, corpus):
    # JSON-quoted, so the path survives being read back as YAML whatever it contains.
    return (*overrides, f"analyses.train.corpus={json.dumps(corpus)}") if corpus else overrides


def _manager(plugins):
    from .plugin_manager import get_plugin_manager

    return get_plugin_manager(plugins=plugins)


def _names(only):
    """``--only a,b`` as a list of names, or None for the default set."""
    return [n.strip() for n in only.split(",") if n.strip()] if only else None


def _warn_broken(manager):
    for name, reason in manager.registry().broken.items():
        click.echo(f"warning: plugin {name}: {reason}", err=True)


@click.group()
@click.version_option(package_name="explorer")
def cli():
    """Explore GPT architectures: build a model from a YAML spec and analyse it.

    Example:

        explorer build specs/gpt2_small.yaml --only params,memory
    """


@cli.command()
@click.argument("spec_path", metavar="SPEC")
@click.option("--only", metavar="A,B", help="Run only these analyses (comma-separated).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key for this run, e.g. components.norm=layernorm. Repeatable.")
@_format_option
@_out_option
@_plugins_option
@_weights_option
@_corpus_option
def build(spec_path, only, overrides, fmt, out_path, plugins, weights, corpus):
    """Build the model SPEC describes and report on it.

    Example:

        explorer build specs/gpt2_small.yaml --set model.n_layers=2 --format json

    SPEC may also be an explorer checkpoint (.safetensors), which carries its spec.
    """
    manager = _manager(plugins)
    overrides = _with_corpus(overrides, corpus)
    spec, weights = _spec_and_weights(spec_path, overrides, manager, weights)
    _warn_broken(manager)
    from .analysis import analyze  # imports torch

    report = analyze(spec, only=_names(only), weights=weights)
    if fmt == "json":
        from .report import to_json

        _emit(to_json(report), out_path)
    else:
        from .report import to_text

        registry = manager.registry()
        renderers = {name: registry.analyses[name].load_render() for name in report["analyses"]}
        _emit(to_text(report, renderers), out_path)
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    if report["failures"]:
        for name, message in report["failures"].items():
            click.echo(f"error: {message}", err=True)
        sys.exit(1)


class _Progress:
    """One bar per spec on stderr, advanced per analysis; silent unless stderr is a terminal."""

    def __init__(self, names, n_analyses, enabled):
        self.names, self.n, self.enabled = names, n_analyses, enabled
        self.done = {}

    def __call__(self, spec_index, analysis):
        if not self.enabled:
            return
        k = self.done[spec_index] = self.done.get(spec_index, 0) + 1
        width = 20
        filled = int(width * k / max(1, self.n))
        line = (f"\r{self.names[spec_index][:24]:<24} [{'#' * filled}{'.' * (width - filled)}] "
                f"{k}/{self.n} {analysis:<12}")
        click.echo(line, nl=k >= self.n, err=True)


@cli.command()
@click.argument("spec_paths", metavar="SPEC...", nargs=-1, required=True)
@click.option("--only", metavar="A,B", help="Run only these analyses (comma-separated).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key in every spec, e.g. model.n_layers=2. Repeatable.")
@click.option("--seed", type=int, help="The seed for every spec (default: the first spec's).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table",
              show_default=True, help="Output format.")
@click.option("--plots", "plots_dir", metavar="DIR", help="Write PNG charts into DIR.")
@click.option("--weights", "weights", multiple=True, metavar="PATH",
              help="Weights to load: once for every spec, or once per spec in order.")
@_out_option
@_plugins_option
@_corpus_option
def compare(spec_paths, only, overrides, seed, fmt, plots_dir, weights, out_path, plugins, corpus):
    """Run the same analyses on every SPEC and print them side by side.

    Differences are against the first spec, absolute and in %; the spec keys that differ are
    listed above the table.

    Example:

        explorer compare specs/gpt2_small.yaml specs/ablations/tied.yaml --only params,memory
    """
    if len(weights) not in (0, 1, len(spec_paths)):
        raise UserError(f"--weights: given {len(weights)} times for {len(spec_paths)} specs; "
                        "give it once (for every spec) or once per spec")
    manager = _manager(plugins)
    overrides = _with_corpus(overrides, corpus)
    per_spec = list(weights) * len(spec_paths) if len(weights) == 1 else list(weights)
    pairs = [_spec_and_weights(path, overrides, manager, w)
             for path, w in zip(spec_paths, per_spec or [None] * len(spec_paths))]
    specs = [spec for spec, _ in pairs]
    _warn_broken(manager)
    names = _names(only)

    from .analysis import select
    from .comparison import compare as run_compare, to_markdown, to_text

    n_analyses = len(select(manager.registry(), names))
    progress = _Progress([s.name for s in specs], n_analyses,
                         enabled=fmt != "json" and sys.stderr.isatty())
    result = run_compare(specs, only=names, seed=seed, progress=progress,
                         weights=[w for _, w in pairs])
    if plots_dir:
        from .plots import write_plots

        result["plots"] = write_plots(result, plots_dir)
    if fmt == "json":
        from .report import to_json

        _emit(to_json(result), out_path)
    elif fmt == "markdown":
        _emit(to_markdown(result), out_path)
    else:
        _emit(to_text(result), out_path)
        for path in result.get("plots", []):
            click.echo(f"wrote {path}", err=bool(out_path))
    for spec, report in zip(result["specs"], result["reports"]):
        for warning in report["warnings"]:
            click.echo(f"warning: {spec}: {warning}", err=True)
    failures = [m for r in result["reports"] for m in r["failures"].values()]
    for message in failures:
        click.echo(f"error: {message}", err=True)
    if failures:
        sys.exit(1)


class _StreamPrinter:
    """Print the text of generated tokens as they come, flushing each piece.

    A BPE token can end inside a multi-byte UTF-8 character; the text is held back while it ends
    in a replacement character, until the next token completes it (at most 3 more bytes).
    """

    def __init__(self, decode):
        self.decode = decode
        self.ids, self.printed, self.held = [], "", 0

    def add(self, token_id):
        self.ids.append(token_id)
        text = self.decode(self.ids)
        if text.endswith("\ufffd") and self.held < 3:
            self.held += 1
            return
        self.held = 0
        self._show(text)

    def close(self):
        self._show(self.decode(self.ids))
        click.echo("")

    def _show(self, text):
        piece = text[len(self.printed):] if text.startswith(self.printed) else text
        if piece:
            click.echo(piece, nl=False)
            sys.stdout.flush()
        self.printed = text


@cli.command(name="generate")
@click.argument("spec_path", metavar="SPEC")
@click.option("--prompt", required=True, help="The text to continue.")
@click.option("--max-new-tokens", type=int, default=50, show_default=True,
              help="How many tokens to generate.")
@click.option("--temperature", type=float, default=0.0, show_default=True,
              help="0 is greedy (the book's generate_text_simple); > 0 samples.")
@click.option("--top-k", type=int, help="Sample only from the K likeliest tokens.")
@click.option("--top-p", type=float,
              help="Nucleus sampling: the smallest set of tokens with probability P, in (0, 1].")
@click.option("--seed", type=int, help="Seed for sampling (default: the spec's seed).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key for this run, e.g. model.n_layers=2. Repeatable.")
@_format_option
@_weights_option
@_plugins_option
def generate_text(spec_path, prompt, max_new_tokens, temperature, top_k, top_p, seed, overrides,
                  fmt, weights, plugins):
    """Continue --prompt with the model SPEC describes, printing tokens as they come.

    Decoding uses a KV cache, so each token costs a forward of one position (past the context,
    the book's forward of the last context_length tokens). --format json prints the prompt, all
    token ids (prompt first) and the text at the end instead of streaming.

    Example:

        explorer generate specs/gpt2_small_openai.yaml --weights gpt2/ --prompt "Hello, I am"
    """
    from .generation import check_sampling

    manager = _manager(plugins)
    spec, weights = _spec_and_weights(spec_path, overrides, manager, weights)
    _warn_broken(manager)
    check_sampling(max_new_tokens, temperature, top_k, top_p)  # before any model is built
    from .tokenizer import get_tokenizer

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

    import torch

    from .generation import generate_stream
    from .model import build_model

    model = build_model(spec, weights=weights).eval()
    stream = generate_stream(model, torch.tensor([ids]), max_new_tokens, temperature=temperature,
                             top_k=top_k, top_p=top_p, seed=spec.seed if seed is None else seed)
    n_vocab = tok.n_vocab  # a vocab padded past the tokenizer's can emit ids it cannot decode

    def decode(token_ids):
        return tok.decode([i for i in token_ids if i < n_vocab])

    if fmt == "json":
        new = [int(token) for token in stream]
        click.echo(json.dumps({"prompt": prompt, "token_ids": ids + new,
                               "text": decode(ids + new)}, indent=2))
        return
    click.echo(prompt, nl=False)
    printer = _StreamPrinter(decode)
    for token in stream:
        printer.add(int(token))
    printer.close()


@cli.command(name="plugins")
@click.option("--kind", help="Only this kind (norm, attention, ..., tokenizer), or 'analysis'.")
@_format_option
@_plugins_option
def list_plugins(kind, fmt, plugins):
    """List every registered component and analysis, with parameters and provider.

    Example:

        explorer plugins --kind attention
    """
    from .components import REGISTERED_KINDS
    from .plugin_manager import unknown_name_message

    manager = _manager(plugins)
    registry = manager.registry()
    kinds = (*REGISTERED_KINDS, "analysis")
    if kind and kind not in kinds:
        raise UserError("--kind: " + unknown_name_message("kind", kind, list(kinds)))
    entries = []
    for (k, name), comp in sorted(registry.components.items(),
                                  key=lambda item: (REGISTERED_KINDS.index(item[0][0]), item[0][1])):
        entries.append((k, name, comp, registry.provider[(k, name)]))
    for name, analysis in sorted(registry.analyses.items()):
        entries.append(("analysis", name, analysis, registry.provider[("analysis", name)]))
    entries = [e for e in entries if not kind or e[0] == kind]
    broken = registry.broken

    if fmt == "json":
        click.echo(json.dumps({
            "components": [{
                "kind": k, "name": name, "description": item.description,
                "params": [{"name": p.name, "type": p.type_name, "default": p.default,
                            "help": p.help, **({"choices": list(p.choices)} if p.choices else {})}
                           for p in item.params],
                "plugin": prov.plugin, "distribution": prov.distribution,
            } for k, name, item, prov in entries],
            "broken": broken,
            "blocked": sorted(manager.blocked),
        }, indent=2))
        return
    current = None
    for k, name, item, prov in entries:
        if k != current:
            click.echo(f"\n{k}:")
            current = k
        click.echo(f"  {name:<16} {item.description}")
        for p in item.params:
            choices = f" one of {', '.join(map(str, p.choices))}" if p.choices else ""
            click.echo(f"      {p.name}: {p.type_name} = {p.default!r}{choices}  {p.help}")
        click.echo(f"      from {prov}")
    for name, reason in broken.items():
        click.echo(f"\nbroken plugin {name}: {reason}")
    for name in sorted(manager.blocked):
        click.echo(f"\nblocked plugin {name} (EXPLORER_DISABLE_PLUGINS)")


@cli.command()
@click.argument("spec_path", metavar="SPEC")
@_weights_option
@click.option("--to", "target", nargs=2, type=(click.Choice(["hf", "explorer"]), str),
              required=True, metavar="FORMAT OUT",
              help="hf OUT_DIR: config.json + model.safetensors for transformers' "
                   "GPT2LMHeadModel; explorer OUT.safetensors: a checkpoint that carries the spec.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key for this run, e.g. model.dropout.attention=0. Repeatable.")
@_plugins_option
def export(spec_path, weights, target, overrides, plugins):
    """Write the model SPEC describes, with --weights loaded, in another format.

    Example:

        explorer export specs/gpt2_small_openai.yaml --weights gpt2/ --to hf gpt2-out/
    """
    manager = _manager(plugins)
    spec, weights = _spec_and_weights(spec_path, overrides, manager, weights)
    _warn_broken(manager)
    if not weights:
        raise UserError("export needs --weights PATH (or an explorer checkpoint as SPEC)")
    fmt, out = target
    from .model import build_model
    from .weights import check_hf_exportable, export_hf, save_checkpoint

    if fmt == "hf":
        check_hf_exportable(spec)  # refuse before loading anything
    model = build_model(spec, weights=weights)
    paths = export_hf(model, spec, out) if fmt == "hf" else [save_checkpoint(model, spec, out)]
    for path in paths:
        click.echo(f"wrote {path}")


from .cli_sweep import sweep as _sweep_command  # noqa: E402  (it imports the helpers above)

cli.add_command(_sweep_command)


def main(argv=None):
    """Console entry point: user errors become one line and exit code 2, never a traceback."""
    try:
        cli.main(args=argv, prog_name="explorer", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ExplorerError as exc:
        click.echo(f"Error: {one_line(exc)}", err=True)
        sys.exit(2)
    except MemoryError:
        click.echo("Error: out of memory; try a smaller spec or --only params,memory", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("EXPLORER_DEBUG"):
            raise
        click.echo(f"Error: internal error: {type(exc).__name__}: {exc} "
                   "(set EXPLORER_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
    sys.exit(0)
