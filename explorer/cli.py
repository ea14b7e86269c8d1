"""The ``explorer`` command: a thin click layer over the Python API.

Torch is imported only inside the commands that build models, so ``explorer --help`` is quick.
"""

import json
import os
import sys
import unicodedata

import click

from .errors import ExplorerError, PluginError, one_line


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


def _html_option(f):
    return click.option("--html", "html_path", metavar="FILE",
                        help="Also write the report as one self-contained HTML page to FILE "
                             "(opens offline in any browser; charts inline).")(f)


def check_html_path(path):
    """Refuse an --html FILE that cannot be written, before the report runs for minutes."""
    if not path:
        return
    from pathlib import Path

    target = Path(path)
    if target.is_dir():
        raise UserError(f"--html {path}: is a directory; give a file name, e.g. "
                        f"{target / 'report.html'}")
    if not target.parent.is_dir():
        raise UserError(f"--html {path}: folder {target.parent} does not exist")


def write_html(page, path):
    """Write an HTML page (explorer.html.Page) atomically; say where, and what failed in it.
    Returns True when every part of the page could be drawn."""
    try:
        page.write(path)
    except OSError as exc:
        raise UserError(f"--html {path}: cannot write: {exc.strerror or exc}") from None
    click.echo(f"wrote {path}", err=True)
    for problem in page.problems:
        click.echo(f"error: --html: {problem}", err=True)
    return not page.problems


def _command_line():
    """This run's command line, for a page's provenance."""
    from .html.provenance import command_line

    root = click.get_current_context().find_root()
    return command_line(root.obj.get("argv") if isinstance(root.obj, dict) else None)


def _weights_option(f):
    return click.option(
        "--weights", metavar="PATH",
        help="Load weights: a Hugging Face GPT-2 directory or file (model.safetensors, "
             "pytorch_model.bin), a book model.pth, an explorer checkpoint, or any format a "
             "plugin registers.",
    )(f)


def _spec_and_weights(spec_path, overrides, manager, weights):
    """SPEC is a YAML spec, an explorer checkpoint (.safetensors) that carries its spec and
    supplies the weights unless --weights is given, or a Hugging Face config.json (or the
    folder holding it)."""
    if spec_path.endswith(".safetensors"):
        from .weights import spec_from_checkpoint

        return spec_from_checkpoint(spec_path, overrides, manager), weights or spec_path
    from .hf_config import is_hf_config, spec_from_hf

    if is_hf_config(spec_path):
        return spec_from_hf(spec_path, overrides, manager), weights
    from .spec import load_spec

    return load_spec(spec_path, overrides=overrides, plugins=manager), weights


def _device_options(dtype_help):
    """``--device`` and ``--dtype``: names checked at once (no torch), the device resolved
    against this torch before anything is built (:func:`_device`)."""
    from .devices import DTYPE_NAMES

    def add(f):
        f = click.option("--dtype", type=click.Choice(DTYPE_NAMES), default="float32",
                         show_default=True, help=dtype_help)(f)
        return click.option(
            "--device", default="cpu", show_default=True, metavar="auto|cpu|cuda[:N]|mps",
            help="Where the model and its tensors live; auto picks cuda, then mps, then cpu. "
                 "A device this torch cannot use is refused before anything is built.")(f)
    return add


MIXED_PRECISION = ("What forwards compute in: float32, or bfloat16 / float16 mixed precision "
                   "(float32 weights and optimizer state, autocast forwards, float16 with a "
                   "gradient scaler in training).")


def _device(name):
    """The ``torch.device`` for ``--device`` (imports torch), or exit 2 with one line."""
    from .devices import DEVICE_NAMES, check_device_name, resolve_device

    if check_device_name(name) is None:
        raise UserError(f"--device: {name!r} is not a device; use one of "
                        f"{', '.join(DEVICE_NAMES)}")
    return resolve_device(name)


def _corpus_option(f):
    return click.option("--corpus", metavar="FILE",
                        help="Text file for the train analysis (sets analyses.train.corpus).")(f)


def _with_corpus(overrides, corpus):
    # JSON-quoted, so the path survives being read back as YAML whatever it contains.
    return (*overrides, f"analyses.train.corpus={json.dumps(corpus)}") if corpus else overrides


def _manager(plugins):
    """A fresh plugin manager with the -p/--plugin plugins, which must load: the user named them."""
    from .plugin_manager import get_plugin_manager

    try:
        return get_plugin_manager(plugins=plugins)
    except PluginError as exc:
        raise UserError(f"--plugin: {exc}") from None


def _names(only):
    """``--only a,b`` as a list of names, or None for the default set."""
    return [n.strip() for n in only.split(",") if n.strip()] if only else None


def _warn_broken(*managers):
    """Warn once about each installed plugin that failed (several managers see the same ones)."""
    seen = set()
    for manager in managers:
        for name, reason in manager.registry().broken.items():
            if (name, reason) not in seen:
                seen.add((name, reason))
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
@_html_option
@_plugins_option
@_weights_option
@_corpus_option
@_device_options(MIXED_PRECISION)
def build(spec_path, only, overrides, fmt, out_path, html_path, plugins, weights, corpus, device,
          dtype):
    """Build the model SPEC describes and report on it.

    Example:

        explorer build specs/gpt2_small.yaml --set model.n_layers=2 --format json

    SPEC may also be an explorer checkpoint (.safetensors), which carries its spec, or a
    Hugging Face config.json (or its folder): without --only or --weights, a config gets the
    analyses that need only shapes (params, memory, flops, summary), on the meta device, so a
    model of any size is costed in seconds.
    """
    check_html_path(html_path)
    manager = _manager(plugins)
    overrides = _with_corpus(overrides, corpus)
    spec, weights = _spec_and_weights(spec_path, overrides, manager, weights)
    _warn_broken(manager)
    names = _names(only)
    from .hf_config import is_hf_config

    if names is None and weights is None and is_hf_config(spec_path):
        names = [a.name for a in manager.registry().analyses.values()
                 if a.default and not a.needs_weights]
    device = _device(device)  # imports torch
    from .analysis import analyze

    report = analyze(spec, only=names, weights=weights, device=device, dtype=dtype)
    if report["refused"] and not report["analyses"]:
        pass  # every analysis asked for was refused: the refusal is the whole answer
    elif fmt == "json":
        from .report import to_json

        _emit(to_json(report), out_path)
    else:
        from .report import to_text

        registry = manager.registry()
        renderers = {name: registry.analyses[name].load_render() for name in report["analyses"]}
        _emit(to_text(report, renderers), out_path)
    html_ok = True
    if html_path:
        from .html import build_page, provenance

        html_ok = write_html(build_page(report, manager.registry(), provenance(
            _command_line(), spec.seed, report["environment"])), html_path)
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    for name, message in report["failures"].items():
        # A refusal is bad input (too large for this machine): one line, exit 2, as ever.
        click.echo(f"{'Error' if name in report['refused'] else 'error'}: {message}", err=True)
    if report["refused"]:
        sys.exit(2)
    if report["failures"] or not html_ok:
        sys.exit(1)


@cli.command()
@click.argument("spec_paths", metavar="SPEC...", nargs=-1, required=True)
@click.option("--only", metavar="A,B", help="Run only these analyses (comma-separated).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key in every spec, e.g. model.n_layers=2. Repeatable.")
@click.option("--seed", type=int, help="The seed for every spec (default: the first spec's).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table",
              show_default=True, help="Output format.")
@click.option("--figures", "figure_patterns", multiple=True, metavar="PATTERN",
              help="Show only the figures PATTERN matches (fnmatch: 'memory.*'; a name also "
                   "picks the figures under it: 'params'). Repeatable or comma-separated; JSON "
                   "keeps every figure.")
@click.option("--plots", "plots_dir", metavar="DIR",
              help="Write each analysis's charts into DIR as PNG.")
@click.option("--weights", "weights", multiple=True, metavar="PATH",
              help="Weights to load: once for every spec, or once per spec in order.")
@_out_option
@_html_option
@_plugins_option
@_corpus_option
@_device_options(MIXED_PRECISION)
def compare(spec_paths, only, overrides, seed, fmt, figure_patterns, plots_dir, weights, out_path,
            html_path, plugins, corpus, device, dtype):
    """Run the same analyses on every SPEC and print their figures side by side.

    Figures are rows, specs are columns; beside each value, its difference from the first spec
    in %. The spec keys that differ are listed above the table. A line on stderr says when each
    spec is done; one spec's failure leaves the others' results in the report (exit code 1).

    Example:

        explorer compare specs/gpt2_small.yaml specs/ablations/tied.yaml --only params,memory
    """
    check_html_path(html_path)
    if len(weights) not in (0, 1, len(spec_paths)):
        raise UserError(f"--weights: given {len(weights)} times for {len(spec_paths)} specs; "
                        "give it once (for every spec) or once per spec")
    overrides = _with_corpus(overrides, corpus)
    per_spec = list(weights) * len(spec_paths) if len(weights) == 1 else list(weights)
    # Each spec gets its own plugin manager: it sees the installed plugins, those given with
    # -p/--plugin and its own plugins:, never another spec's.
    pairs = [_spec_and_weights(path, overrides, _manager(plugins), w)
             for path, w in zip(spec_paths, per_spec or [None] * len(spec_paths))]
    specs = [spec for spec, _ in pairs]
    _warn_broken(*(spec.plugin_manager for spec in specs))
    names = _names(only)

    from .analysis import select
    from .compare_table import to_markdown, to_text
    from .comparison import analyses_of, patterns, pick, same_seed, tabulate, unmatched
    from .progress import run_showing_progress

    specs = same_seed([spec for spec, _ in pairs], seed)
    counts = [len(select(s.plugin_manager.registry(), names)) for s in specs]
    chosen = patterns(figure_patterns)
    device = _device(device)
    reports = []
    try:
        for report in run_showing_progress(specs, counts, names, [w for _, w in pairs],
                                           bar=fmt != "json", lines=fmt != "json",
                                           device=device, dtype=dtype):
            reports.append(report)
    except KeyboardInterrupt:
        click.echo(f"Interrupted: {len(reports)} of {len(specs)} specs finished.", err=True)
    result = tabulate(specs, reports)
    plot_failures = {}
    if plots_dir and reports:
        from .plots import write_plots

        result["plots"], plot_failures = write_plots(result, analyses_of(specs, reports),
                                                     plots_dir)
    if fmt == "json":
        from .report import to_json

        _emit(to_json(result), out_path)
    else:
        render = to_markdown if fmt == "markdown" else to_text
        _emit(render(result, pick(result["rows"], chosen)), out_path)
        for pattern in unmatched(result["rows"], chosen):
            click.echo(f"warning: --figures {pattern!r} matches no figure", err=True)
        for path in result.get("plots", []):
            click.echo(f"wrote {path}", err=bool(out_path))
    for spec, report in zip(result["specs"], result["reports"]):
        for warning in report["warnings"]:
            click.echo(f"warning: {spec}: {warning}", err=True)
    for failure in result["failures"]:
        click.echo(f"error: {failure['spec']}: {failure['message']}", err=True)
    for message in plot_failures.values():
        click.echo(f"error: --plots: {message}", err=True)
    html_ok = True
    if html_path and reports:
        from .html import compare_page, provenance

        html_ok = write_html(compare_page(
            result, [s.plugin_manager.registry() for s in specs],
            provenance(_command_line(), result["seed"], reports[0]["environment"])), html_path)
    if result["not_run"]:
        sys.exit(130)
    if result["failures"] or plot_failures or not html_ok:
        sys.exit(1)


def _stdout_is_terminal():
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
@_device_options("The weights' dtype while generating: float32, or bfloat16 / float16 (half "
                 "the memory, and faster where the device has 16-bit matmuls).")
@click.option("--compile", "compile_model", is_flag=True,
              help="Wrap the model in torch.compile (dynamic shapes): it compiles on the first "
                   "tokens, then runs faster; pays off on long generations.")
def generate_text(spec_path, prompt, max_new_tokens, temperature, top_k, top_p, seed, overrides,
                  fmt, weights, plugins, device, dtype, compile_model):
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

    device = _device(device)  # imports torch
    import contextlib

    import torch

    from .analysis import check_fits
    from .compilation import compile_errors, compile_model as compiled
    from .devices import torch_dtype
    from .generation import TextStream, generate_stream
    from .model import build_model, inference_layout

    # Refuse before allocating the weights (a meta model has only shapes).
    check_fits(spec, build_model(spec, device="meta"), suggest_shape_analyses=False)
    # Built on the CPU, then moved and cast: the same seeded weights on every device.
    model = build_model(spec, weights=weights).eval().to(device=device, dtype=torch_dtype(dtype))
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


@cli.command(name="spec-from-hf")
@click.argument("config_path", metavar="CONFIG")
@_out_option
@_plugins_option
def spec_from_hf_command(config_path, out_path, plugins):
    """Print the explorer spec of a Hugging Face CONFIG (a config.json, or its folder) as YAML.

    model_type picks the converter (explorer plugins --kind config_converter lists them); a
    field the spec cannot express is one line naming it. The tokenizer is GPT-2's for GPT-2's
    vocabulary, else bytes (the models' own tokenizers are not available offline).

    Example:

        explorer spec-from-hf Meta-Llama-3-8B/config.json > llama3_8b.yaml
    """
    from .hf_config import spec_document, spec_from_hf, to_yaml

    manager = _manager(plugins)
    doc, _, config = spec_document(config_path, manager)
    spec_from_hf(config_path, plugins=manager)  # it must validate, or the YAML would not load
    _emit(to_yaml(doc, config).rstrip("\n"), out_path)


def _param_json(p):
    out = {"name": p.name, "type": p.type_name, "default": p.default, "help": p.help}
    if p.choices:
        out["choices"] = list(p.choices)
    if p.min is not None:
        out.update(min=p.min, exclusive_min=p.exclusive_min)
    if p.max is not None:
        out["max"] = p.max
    return out


@cli.command(name="plugins")
@click.option("--kind", help="Only this kind (norm, attention, ..., tokenizer), 'analysis', "
                             "'checkpoint_format' or 'config_converter'.")
@_format_option
@_plugins_option
def list_plugins(kind, fmt, plugins):
    """List every registered component, analysis, checkpoint format and config converter,
    with parameters and provider.

    Example:

        explorer plugins --kind attention
    """
    from .components import REGISTERED_KINDS
    from .plugin_manager import CONVERTER_KIND, FORMAT_KIND, unknown_name_message

    manager = _manager(plugins)
    registry = manager.registry()
    kinds = (*REGISTERED_KINDS, "analysis", FORMAT_KIND, CONVERTER_KIND)
    if kind and kind not in kinds:
        raise UserError("--kind: " + unknown_name_message("kind", kind, list(kinds)))
    entries = []
    for (k, name), comp in sorted(registry.components.items(),
                                  key=lambda item: (REGISTERED_KINDS.index(item[0][0]), item[0][1])):
        entries.append((k, name, comp, registry.provider[(k, name)]))
    for name, analysis in sorted(registry.analyses.items()):
        entries.append(("analysis", name, analysis, registry.provider[("analysis", name)]))
    for name, checkpoint_format in registry.formats.items():  # in detection order
        provider = registry.provider[(FORMAT_KIND, name)]
        entries.append((FORMAT_KIND, name, checkpoint_format, provider))
    for name, converter in sorted(registry.converters.items()):
        entries.append((CONVERTER_KIND, name, converter, registry.provider[(CONVERTER_KIND, name)]))
    entries = [e for e in entries if not kind or e[0] == kind]
    broken = registry.broken

    if fmt == "json":
        click.echo(json.dumps({
            "components": [{
                "kind": k, "name": name, "description": item.description,
                "params": [_param_json(p) for p in getattr(item, "params", ())],
                **({"reads": item.detect is not None, "target": item.target}
                   if k == FORMAT_KIND else {}),
                **({"ignores": list(item.ignores)} if k == CONVERTER_KIND else {}),
                "plugin": prov.plugin, "distribution": prov.distribution,
            } for k, name, item, prov in entries],
            "broken": broken,
            "blocked": manager.blocked,
        }, indent=2))
        return
    current = None
    for k, name, item, prov in entries:
        if k != current:
            click.echo(f"\n{k}:")
            current = k
        click.echo(f"  {name:<16} {item.description}")
        if k == FORMAT_KIND:
            click.echo(f"      reads: {'yes' if item.detect else 'no'}; export: "
                       + (f"--to {item.target}" if item.target else "no"))
        if k == CONVERTER_KIND and item.ignores:
            click.echo(f"      ignores: {', '.join(item.ignores)}")
        for p in getattr(item, "params", ()):
            choices = f" one of {', '.join(map(str, p.choices))}" if p.choices else ""
            bounds = f" ({p.range_text})" if p.range_text else ""
            click.echo(f"      {p.name}: {p.type_name} = {p.default!r}{choices}{bounds}  {p.help}")
        click.echo(f"      from {prov}")
    for name, reason in broken.items():
        click.echo(f"\nbroken plugin {name}: {reason}")
    for name in manager.blocked:
        click.echo(f"\nblocked plugin {name} (EXPLORER_DISABLE_PLUGINS)")


@cli.command()
@click.argument("spec_path", metavar="SPEC")
@click.option("--weights", metavar="PATH",
              help="The weights to export (any checkpoint --weights reads elsewhere). Without "
                   "it, the spec's initial weights at its seed: an untrained baseline.")
@click.option("--to", "target", nargs=2, type=(str, str), required=True, metavar="FORMAT OUT",
              help="hf OUT_DIR: config.json + model.safetensors for transformers' "
                   "GPT2LMHeadModel; explorer OUT.safetensors: a checkpoint that carries the "
                   "spec; or a target a plugin registers (explorer plugins --kind "
                   "checkpoint_format).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key for this run, e.g. model.dropout.attention=0. Repeatable.")
@click.option("--max-shard-size", "shard_size", default="5GB", show_default=True, metavar="SIZE",
              help="hf: above this, write shards of at most this size and "
                   "model.safetensors.index.json, as transformers does (500MB, 5GB, or bytes).")
@_plugins_option
def export(spec_path, weights, target, overrides, shard_size, plugins):
    """Write the model SPEC describes in another format: with --weights loaded, or else the
    spec's seeded initial weights (a random baseline for Hugging Face tooling, say).

    Example:

        explorer export specs/gpt2_small_openai.yaml --weights gpt2/ --to hf gpt2-out/
    """
    manager = _manager(plugins)
    spec, weights = _spec_and_weights(spec_path, overrides, manager, weights)
    _warn_broken(manager)
    fmt, out = target
    max_shard_bytes = _size(shard_size, "--max-shard-size")
    from .weights import check_exportable, export as export_model

    check_exportable(spec, fmt)  # an unknown target or a spec it cannot hold: refuse before building
    from .model import build_model

    model = build_model(spec, weights=weights)
    if not weights:
        click.echo(f"no --weights: exporting the initial weights of seed {spec.seed} (untrained)")
    for path in export_model(model, spec, fmt, out, max_shard_bytes):
        click.echo(f"wrote {path}")


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20,
          "GIB": 2**30}


def _size(text, option):
    """A size as transformers writes it ("5GB" = 5 * 10**9 bytes, "500MiB"), in bytes."""
    number = text.strip().upper().rstrip("BIKMG")
    unit = text.strip().upper()[len(number):]
    try:
        value = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        raise UserError(f"{option}: {text!r} is not a size; e.g. 500MB, 5GB, 2GiB or a number "
                        "of bytes") from None
    if value < 1:
        raise UserError(f"{option}: must be at least 1 byte, got {text!r}")
    return int(value)


from .cli_sweep import sweep as _sweep_command  # noqa: E402  (it imports the helpers above)

cli.add_command(_sweep_command)


def main(argv=None):
    """Console entry point: user errors become one line and exit code 2, never a traceback."""
    try:
        args = sys.argv[1:] if argv is None else list(argv)
        # The arguments ride along for provenance: an HTML page records the command line.
        cli.main(args=args, prog_name="explorer", standalone_mode=False, obj={"argv": args})
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # click wraps Ctrl-C in Abort
            click.echo("Interrupted.", err=True)
            sys.exit(130)
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
