"""Weights and specs in other formats: ``explorer export`` (a model to a checkpoint format)
and ``explorer spec-from-hf`` (a Hugging Face config to a spec)."""

import json
import os

import click

from .options import UserError, emit, format_option, ignore_config_option, \
    manager_with_plugins, out_option, plugins_option, spec_and_weights, warn_broken


@click.command()
@click.argument("spec_path", metavar="SPEC")
@click.option("--weights", metavar="PATH",
              help="The weights to export (any checkpoint --weights reads elsewhere). Without "
                   "it, the spec's initial weights at its seed: an untrained baseline.")
@click.option("--to", "target", nargs=2, type=(str, str), required=True, metavar="FORMAT OUT",
              help="hf OUT_DIR: config.json + model.safetensors for transformers (GPT-2, "
                   "the Llama family or DeepSeek, as the spec's components say); explorer "
                   "OUT.safetensors: a checkpoint that carries the "
                   "spec; or a target a plugin registers (explorer plugins --kind "
                   "checkpoint_format).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key for this run, e.g. model.dropout.attention=0. Repeatable.")
@click.option("--max-shard-size", "shard_size", default="5GB", show_default=True, metavar="SIZE",
              help="hf: above this, write shards of at most this size and "
                   "model.safetensors.index.json, as transformers does (500MB, 5GB, or bytes).")
@ignore_config_option
@format_option
@plugins_option
def export(spec_path, weights, target, overrides, shard_size, ignore_fields, fmt, plugins):
    """Write the model SPEC describes in another format: with --weights loaded, or else the
    spec's seeded initial weights (a random baseline for Hugging Face tooling, say).

    --format json prints one object instead of the lines: format, out, the files written,
    their total bytes, and whether the weights are the initial ones of the spec's seed.

    Example:

        explorer export specs/gpt2_small_openai.yaml --weights gpt2/ --to hf gpt2-out/
    """
    manager = manager_with_plugins(plugins)
    spec, weights = spec_and_weights(spec_path, overrides, manager, weights, ignore_fields)
    warn_broken(manager)
    target_format, out = target
    max_shard_bytes = _size(shard_size, "--max-shard-size")
    from ..weights import check_exportable, export as export_model

    # An unknown target, or a spec it cannot hold: refused before anything is built.
    check_exportable(spec, target_format)
    from ..weights import load_model

    model = load_model(spec, weights)
    initial_weights = not weights
    if initial_weights and fmt == "text":
        click.echo(f"no --weights: exporting the initial weights of seed {spec.seed} (untrained)")
    paths = [str(path) for path in export_model(model, spec, target_format, out, max_shard_bytes)]
    if fmt == "json":
        click.echo(json.dumps({"format": target_format, "out": out, "files": paths,
                               "bytes": sum(os.path.getsize(path) for path in paths),
                               "initial_weights": initial_weights, "seed": spec.seed}, indent=2))
        return
    for path in paths:
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


@click.command(name="spec-from-hf")
@click.argument("config_path", metavar="CONFIG")
@ignore_config_option
@format_option
@out_option
@plugins_option
def spec_from_hf_command(config_path, ignore_fields, fmt, out_path, plugins):
    """Print the explorer spec of a Hugging Face CONFIG (a config.json, or its folder) as YAML.

    model_type picks the converter (explorer plugins --kind config_converter lists them); a
    field the spec cannot express is one line naming it; one explorer does not know, and that
    does not change the model, is skipped with --ignore-config-field NAME. The tokenizer is
    GPT-2's for GPT-2's vocabulary, else bytes (the models' own tokenizers are not available
    offline).
    --format json prints the same document as JSON (without the YAML's first line, a comment
    naming the config).

    Example:

        explorer spec-from-hf Meta-Llama-3-8B/config.json > llama3_8b.yaml
    """
    from ..spec.hf_config import shown_document, spec_document, spec_from_document, to_yaml

    manager = manager_with_plugins(plugins)
    doc, origins, config = spec_document(config_path, manager, ignore_fields)
    # It must validate, or the YAML would not load.
    spec_from_document(doc, origins, config, plugins=manager)
    if fmt == "json":
        emit(json.dumps(shown_document(doc), indent=2), out_path)
    else:
        emit(to_yaml(doc, config).rstrip("\n"), out_path)
