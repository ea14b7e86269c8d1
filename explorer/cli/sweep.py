"""``explorer sweep``: a thin click layer over :mod:`explorer.sweep`.

The sweep file and every grid point are validated before anything heavy runs; torch is imported
only by the commands that train or time runs.
"""

import sys

import click

from ..registry.plugin_manager import get_plugin_manager
from ..training.devices import DTYPE_NAMES
from .options import UserError, check_html_path, emit, html_option, out_option, \
    this_command_line, write_html

FORMATS = ("text", "json", "markdown")


def _check_device(device):
    """Local workers train here: refuse a device this torch cannot use before any run starts
    (imports torch, which the driver otherwise never does). Ray workers may be on other
    machines: each run checks its own."""
    if device != "cpu":
        from ..training.devices import resolve_device

        resolve_device(device, "train.device", "--device cpu")


def _check_modes(dry_run, show_status, report_only, executor, ray_address, ray_timeout,
                 plots_dir, html_path):
    modes = [name for name, on in (("--dry-run", dry_run), ("--status", show_status),
                                   ("--report", report_only)) if on]
    if len(modes) > 1:
        raise UserError(f"{' and '.join(modes)}: choose one")
    if ray_address and executor != "ray":
        raise UserError("--ray-address joins a Ray cluster: give it with --executor ray")
    if ray_timeout is not None and executor != "ray":
        raise UserError("--ray-timeout waits for Ray: give it with --executor ray")
    if plots_dir and (dry_run or show_status):
        raise UserError(f"--plots draws the report's charts: not with {modes[0]}")
    if html_path and dry_run:
        raise UserError("--html writes the report's page: not with --dry-run (nothing has run)")
    check_html_path(html_path)


@click.command(name="sweep")
@click.argument("sweep_path", metavar="FILE")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Where runs execute: worker processes here, or Ray tasks.")
@click.option("--ray-address", metavar="ADDR",
              help="Join the Ray cluster whose head is at ADDR (HOST:6379; run this on one of "
                   "its nodes) instead of starting a local Ray.")
@click.option("--ray-timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="How long to wait for Ray to start, or the cluster at --ray-address to "
                   "answer, before giving up (default: 60).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Runs at once (default: the cores divided by --threads).")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads per run (default: the sweep's train.threads, else 1).")
@click.option("--dry-run", is_flag=True,
              help="Show runs, FLOPs, time and memory per run, and whether they fit; "
                   "train nothing.")
@click.option("--status", "show_status", is_flag=True,
              help="Show done / running / failed / pending from the store; run nothing.")
@click.option("--report", "report_only", is_flag=True,
              help="Print the report from the store as it is (mid-sweep too); run nothing.")
@click.option("--retry-failed", is_flag=True,
              help="Run failed runs again (runs whose worker was killed always are).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Output format.")
@click.option("--plots", "plots_dir", metavar="DIR",
              help="Write curves.png and cost.png into DIR.")
@click.option("--db", metavar="PATH",
              help="The SQLite store (default: beside FILE, FILE.sqlite).")
@click.option("--device", metavar="auto|cpu|cuda[:N]|mps",
              help="Train every run there (sets train.device; part of each run's key). Ray "
                   "runs on cuda each ask for a GPU.")
@click.option("--dtype", type=click.Choice(DTYPE_NAMES),
              help="Train in this precision (sets train.dtype): bfloat16 / float16 autocast "
                   "with float32 master weights.")
@click.option("--track", "track_names", multiple=True, metavar="NAME",
              help="Record each run with this tracker too (mlflow, tensorboard; explorer "
                   "plugins --kind tracker lists them), instead of the file's track:. "
                   "Repeatable.")
@out_option
@html_option
def sweep(sweep_path, executor, ray_address, ray_timeout, workers, threads, dry_run, show_status,
          report_only, retry_failed, fmt, plots_dir, db, device, dtype, track_names, out_path,
          html_path):
    """Train every grid point of the sweep FILE on every seed and report the answer.

    Runs already in the store are kept: a second start runs only what is missing, and an
    edited FILE adds its new points. The report gives per point the final validation loss over
    seeds (mean, sd, 95% CI) and the paired difference against the baseline.

    Example:

        explorer sweep sweeps/positional.yaml --workers 2 --format markdown
    """
    _check_modes(dry_run, show_status, report_only, executor, ray_address, ray_timeout,
                 plots_dir, html_path)
    from pathlib import Path

    from ..sweep import load_sweep, make_plan
    from ..sweep.sweepfile import with_options

    spec = with_options(load_sweep(sweep_path), device=device, dtype=dtype)
    runs = not (dry_run or show_status or report_only)
    manager = get_plugin_manager()
    track = _check_trackers(spec, track_names, manager, installed=runs)
    if executor == "local" and runs:
        _check_device(spec.train.device)
    plan = make_plan(spec, manager)
    db = Path(db) if db else spec.default_store()
    if show_status:
        from ..analysis.report import to_json
        from ..sweep import status
        from ..sweep.standing import status_text

        result = status(spec, db, plan)
        emit(to_json(result) if fmt == "json" else status_text(result), out_path)
        # The report as the store holds it now, with where the sweep stands.
        if html_path and not _write_page(spec, plan, db, html_path, result):
            sys.exit(1)
        return
    if dry_run:
        from ..analysis.report import to_json
        from ..sweep.driver import default_threads, remaining
        from ..sweep.estimate import dry_run_text, estimate

        result = estimate(plan, remaining(plan, db), executor, workers,
                          threads or default_threads(plan), ray_address)
        emit(to_json(result) if fmt == "json" else dry_run_text(result), out_path)
        return
    tracking = None
    if not report_only:
        from ..sweep import run_sweep
        from ..sweep.progress import Progress

        progress = Progress(spec.name, enabled=fmt != "json" and sys.stderr.isatty())
        tracking = run_sweep(spec, executor=executor, workers=workers, threads=threads, db=db,
                  retry_failed=retry_failed, progress=progress, plan=plan, track=track,
                  plugins=manager, ray_address=ray_address, ray_timeout=ray_timeout,
                  warn=lambda line: click.echo(f"warning: {line}", err=True))["tracking"]
    _report(spec, plan, db, fmt, plots_dir, out_path, html_path, tracking)


def _check_trackers(spec, names, manager, installed):
    """The trackers to feed (the file's ``track:``, or ``--track``), checked before anything
    runs: names, options and, when the sweep will run, that their libraries are installed."""
    from ..tracking import choose
    from ..tracking.choice import with_names

    chosen = with_names(spec.track, names)
    source, key = ("", "--track") if names else (spec.source, "track")
    choose(chosen, manager.registry(), source, installed=installed, key=key)
    return chosen


def _write_page(spec, plan, db, html_path, status=None, result=None):
    """Write the sweep's page from its report (read from the store unless given); False when a
    chart could not be drawn."""
    from ..html import provenance, sweep_page
    from ..sweep import report

    # --status before the first start: the page of a sweep with every run pending
    result = result or report(spec, db, plan=plan, missing_ok=status is not None)
    return write_html(sweep_page(result, status, provenance(
        this_command_line(), ", ".join(map(str, result["seeds"])), result["versions"])), html_path)


def _report(spec, plan, db, fmt, plots_dir, out_path, html_path, tracking=None):
    from ..sweep import report
    from ..sweep.results import to_json, to_markdown, to_text

    result = report(spec, db, plan=plan)
    if tracking and tracking["trackers"]:  # what this start fed its trackers (warned live)
        result["tracking"] = tracking
    if plots_dir:
        from ..sweep.plots import write_plots

        result["plots"] = write_plots(result, plots_dir)
    emit({"text": to_text, "markdown": to_markdown, "json": to_json}[fmt](result), out_path)
    if fmt != "json":
        for path in result.get("plots", []):
            click.echo(f"wrote {path}", err=True)
    html_ok = not html_path or _write_page(spec, plan, db, html_path, result=result)
    failed = result["counts"]["failed"]
    if failed:
        click.echo(f"error: {failed} run{'s' * (failed != 1)} failed (reasons in the report); "
                   "--retry-failed runs them again", err=True)
    if failed or not html_ok:
        sys.exit(1)
