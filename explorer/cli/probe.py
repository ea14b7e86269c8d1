"""``explorer probe``: a thin click layer over :mod:`explorer.sweep.probe`.

The suite, the specs and every run's settings are checked (the probe is planned) before
anything heavy runs; torch is imported only by the commands that train or time runs.
"""

import sys

import click

from .options import UserError, check_html_path, emit, html_option, out_option, \
    this_command_line, write_html


@click.command(name="probe")
@click.argument("specs", nargs=-1, metavar="SPEC...")
@click.option("--suite", default="mad", show_default=True, metavar="NAME|FILE",
              help="The suite: a suite file, or a shipped suite's name (mad: suites/mad.yaml).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key in every spec, e.g. model.n_layers=2. Repeatable.")
@click.option("--seeds", type=click.IntRange(min=1), metavar="N",
              help="Seeds 1..N per setting (default: the suite's).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Where runs execute: worker processes here, or Ray tasks.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Runs at once (default: the cores divided by --threads).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads per run (default 1).")
@click.option("--store", "db", metavar="PATH",
              help="The SQLite store (default: probe-SUITE.sqlite in this folder); a second "
                   "start runs only what it does not hold.")
@click.option("--dry-run", is_flag=True,
              help="Show runs, costs and the predicted wall time; train nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@click.option("--plots", "plots_dir", metavar="DIR",
              help="Write profile.png (a panel per task) into DIR.")
@out_option
@html_option
def probe(specs, suite, overrides, seeds, executor, workers, threads, db, dry_run, fmt, plots_dir,
          out_path, html_path):
    """Probe each SPEC on a suite of synthetic tasks and print its capability profile.

    Every task at each difficulty level is trained at each learning rate x weight decay of the
    suite's grid on every seed; per spec, task and level the best setting is kept (MAD's
    protocol). The profile gives its score (validation accuracy: mean, 95% CI over seeds) and
    the paired difference against the first SPEC, starred when the CI excludes 0. A probe is a
    sweep: its runs live in a store, and a second start runs only what is missing.

    Example:

    \b
        explorer probe specs/tiny.yaml specs/tiny_rmsnorm.yaml --set model.n_layers=2 --plots out
    """
    if not specs:
        raise UserError("explorer probe: SPEC: missing; give one spec or more to probe "
                        "(e.g. explorer probe specs/tiny.yaml)")
    if dry_run and (plots_dir or html_path):
        raise UserError(f"{'--plots' if plots_dir else '--html'} draws the profile: not with "
                        "--dry-run (nothing has run)")
    check_html_path(html_path)
    from pathlib import Path

    from ..sweep.probe import default_store, make_probe

    planned = make_probe(suite, list(specs), seeds, overrides=overrides)
    db = Path(db) if db else default_store(planned.suite)
    if dry_run:
        from ..analysis.report import to_json
        from ..sweep.driver import default_threads, remaining
        from ..sweep.estimate import dry_run_text, estimate

        result = estimate(planned.plan, remaining(planned.plan, db), executor, workers,
                          threads or default_threads(planned.plan))
        emit(to_json(result) if fmt == "json" else dry_run_text(result), out_path)
        return
    from ..sweep.probe import run_probe
    from ..sweep.probe_report import to_json as profile_json, to_text, write_plot
    from ..sweep.progress import Progress

    progress = Progress(planned.plan.sweep.name, enabled=fmt != "json" and sys.stderr.isatty())
    result = run_probe(planned, executor=executor, workers=workers, threads=threads, db=db,
                       progress=progress)
    if plots_dir:
        result["plots"] = [write_plot(result, plots_dir)]
    emit(profile_json(result) if fmt == "json" else to_text(result), out_path)
    if fmt != "json":
        for path in result.get("plots", []):
            click.echo(f"wrote {path}", err=True)
    html_ok = True
    if html_path:
        from ..html.probe_page import probe_page
        from ..html.provenance import provenance

        html_ok = write_html(probe_page(result, provenance(
            this_command_line(), ", ".join(map(str, result["seeds"])), result["versions"])),
            html_path)
    failed = result["counts"]["failed"]
    if failed:
        click.echo(f"error: {failed} run{'s' * (failed != 1)} failed; the profile keeps each "
                   f"setting's done seeds (the store {db} says why)", err=True)
    if failed or not html_ok:
        sys.exit(1)
