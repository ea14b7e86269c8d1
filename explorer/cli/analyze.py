"""``explorer build`` and ``explorer compare``: run analyses on one spec, or on several side by
side."""

import sys

import click

from .options import MIXED_PRECISION, UserError, check_html_path, check_seed, corpus_option, \
    device_options, emit, format_option, html_option, ignore_config_option, manager_with_plugins, \
    only_names, only_option, out_option, plugins_option, spec_and_weights, this_command_line, \
    torch_device, warn_broken, weights_option, with_corpus, write_html


@click.command()
@click.argument("spec_path", metavar="SPEC")
@only_option
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key for this run, e.g. components.norm=layernorm. Repeatable.")
@format_option
@out_option
@html_option
@plugins_option
@weights_option
@ignore_config_option
@corpus_option
@device_options(MIXED_PRECISION)
@click.option("--track", "track_names", multiple=True, metavar="NAME",
              help="Record the train analysis's run with this tracker (mlflow, tensorboard; "
                   "files in the current folder). Repeatable; needs --only with train.")
def build(spec_path, only, overrides, fmt, out_path, html_path, plugins, weights, ignore_fields,
          corpus, device, dtype, track_names):
    """Build the model SPEC describes and report on it.

    Example:

        explorer build specs/gpt2_small.yaml --set model.n_layers=2 --format json

    SPEC may also be an explorer checkpoint (.safetensors), which carries its spec, or a
    Hugging Face config.json (or its folder): without --only or --weights, a config gets the
    analyses that need only shapes (params, memory, flops, summary), on the meta device, so a
    model of any size is costed in seconds.
    """
    check_html_path(html_path)
    manager = manager_with_plugins(plugins)
    overrides = with_corpus(overrides, corpus)
    spec, weights = spec_and_weights(spec_path, overrides, manager, weights, ignore_fields)
    warn_broken(manager)
    names = only_names(only)
    trackers = _build_trackers(track_names, names, manager)
    from ..spec.hf_config import is_hf_config

    if names is None and weights is None and is_hf_config(spec_path):
        names = [a.name for a in manager.registry().analyses.values()
                 if a.default and not a.needs_weights]
    device = torch_device(device)  # imports torch
    from ..analysis.runner import analyze

    report = analyze(spec, only=names, weights=weights, device=device, dtype=dtype)
    if trackers:
        _track_training(trackers, spec, report)
    if report["refused"] and not report["analyses"]:
        pass  # every analysis asked for was refused: the refusal is the whole answer
    elif fmt == "json":
        from ..analysis.report import to_json

        emit(to_json(report), out_path)
    else:
        from ..analysis.report import to_text

        registry = manager.registry()
        renderers = {name: registry.analyses[name].load_render() for name in report["analyses"]}
        emit(to_text(report, renderers), out_path)
    html_ok = True
    if html_path:
        from ..html import build_page, provenance

        html_ok = write_html(build_page(report, manager.registry(), provenance(
            this_command_line(), spec.seed, report["environment"])), html_path)
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    for name, reason in report["skipped"].items():
        if names and name in names:  # asked for by name: say why it is not in the report
            click.echo(f"note: {name}: not applicable: {reason}", err=True)
    for name, message in report["failures"].items():
        # A refusal is bad input (too large for this machine): one line, exit 2, as ever.
        click.echo(f"{'Error' if name in report['refused'] else 'error'}: {message}", err=True)
    if report["refused"]:
        sys.exit(2)
    if report["failures"] or not html_ok:
        sys.exit(1)


def _build_trackers(names, only, manager):
    """The ``--track`` trackers of build, checked before anything runs: they record the
    ``train`` analysis's run, so it must be asked for."""
    if not names:
        return []
    if not only or "train" not in only:
        raise UserError("--track records the train analysis's run: give it with --only "
                        "train (or a list holding train)")
    from ..tracking import choose, parse_track

    return choose(parse_track(list(names), "", "--track"), manager.registry(), "", key="--track")


def _track_training(chosen, spec, report):
    """Hand the report's training run to the trackers (files in the current folder); a
    tracker that fails warns and the report stands."""
    from pathlib import Path

    from ..errors import ExplorerError
    from ..tracking import open_trackers, report_record

    record = report_record(spec, report)
    if record is None:
        return
    try:
        trackers = open_trackers(chosen, Path.cwd(), spec.name, spec.source,
                                 warn=report["warnings"].append, kept_in="the report")
    except ExplorerError as exc:  # after training: the report is still worth printing
        report["warnings"].append(f"{exc}; the run is in the report")
        return
    trackers.record(record)
    trackers.close()
    report["tracking"] = {"trackers": trackers.names, "warnings": trackers.warnings}


@click.command()
@click.argument("spec_paths", metavar="SPEC...", nargs=-1, required=True)
@only_option
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key in every spec, e.g. model.n_layers=2. Repeatable.")
@click.option("--seed", type=int, callback=check_seed,
              help="The seed for every spec, 0 to 2**63-1 (default: the first spec's).")
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
@ignore_config_option
@out_option
@html_option
@plugins_option
@corpus_option
@device_options(MIXED_PRECISION)
def compare(spec_paths, only, overrides, seed, fmt, figure_patterns, plots_dir, weights,
            ignore_fields, out_path, html_path, plugins, corpus, device, dtype):
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
    overrides = with_corpus(overrides, corpus)
    per_spec = list(weights) * len(spec_paths) if len(weights) == 1 else list(weights)
    # Each spec gets its own plugin manager: it sees the installed plugins, those given with
    # -p/--plugin and its own plugins:, never another spec's.
    pairs = [spec_and_weights(path, overrides, manager_with_plugins(plugins), w, ignore_fields)
             for path, w in zip(spec_paths, per_spec or [None] * len(spec_paths))]
    warn_broken(*(spec.plugin_manager for spec, _ in pairs))
    names = only_names(only)

    from ..analysis.compare_table import to_markdown, to_text
    from ..analysis.comparison import analyses_of, chosen_per_spec, patterns, pick, same_seed, \
        tabulate, unmatched
    from ..analysis.progress import run_showing_progress

    specs = same_seed([spec for spec, _ in pairs], seed)
    # Each spec's names in its own registry, with its own plugins: loaded; unknown: one line.
    counts = [len(chosen) for chosen in chosen_per_spec(specs, names)]
    chosen = patterns(figure_patterns)
    device = torch_device(device)
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
        from ..analysis.plots import write_plots

        result["plots"], plot_failures = write_plots(result, analyses_of(specs, reports),
                                                     plots_dir)
    if fmt == "json":
        from ..analysis.report import to_json

        emit(to_json(result), out_path)
    else:
        render = to_markdown if fmt == "markdown" else to_text
        emit(render(result, pick(result["rows"], chosen)), out_path)
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
        from ..html import compare_page, provenance

        html_ok = write_html(compare_page(
            result, [s.plugin_manager.registry() for s in specs],
            provenance(this_command_line(), result["seed"], reports[0]["environment"])), html_path)
    if result["not_run"]:
        sys.exit(130)
    if result["failures"] or plot_failures or not html_ok:
        sys.exit(1)
