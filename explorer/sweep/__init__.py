"""Seeded ablation studies: ``explorer sweep FILE``.

    >>> from explorer.sweep import load_sweep, make_plan, run_sweep, report
    >>> sweep = load_sweep("sweeps/positional.yaml")
    >>> result = run_sweep(sweep, executor="local", workers=2)  # the report, as a dict
    >>> print(report(sweep, fmt="markdown"))                     # from the store, any time

A sweep file (:mod:`.sweepfile`) names base specs, a grid of spec keys, seeds, train settings
and a budget. The plan (:mod:`.plan`) expands it into runs keyed by what determines their
result; the driver (:mod:`.driver`) runs the missing ones on an executor (:mod:`.executors`:
local processes or Ray) and records each state change in a SQLite store (:mod:`.store`); the
report (:mod:`.results`, :mod:`.stats`, :mod:`.plots`) answers from the store at any time.
Importing this package does not import torch.
"""

from .driver import run_sweep
from .plan import Plan, make_plan
from .store import Store
from .sweepfile import SweepFile, load_sweep

__all__ = ["SweepFile", "Plan", "Store", "list_sweeps", "load_sweep", "make_plan", "run_sweep",
           "report", "status"]


def _open(sweep, db, plan, missing_ok=False):
    from .store import open_to_read

    if not hasattr(sweep, "grid"):
        sweep = load_sweep(sweep)
    return plan or make_plan(sweep), open_to_read(db or sweep.default_store(), missing_ok)


def report(sweep, db=None, fmt=None, plan=None, missing_ok=False):
    """The sweep's report from its store (mid-sweep too): a dict, or text when ``fmt`` is
    ``"text"``, ``"markdown"`` or ``"json"``. ``sweep`` is a path or a SweepFile. A store not
    created yet is an error, or with ``missing_ok`` a report with every run pending."""
    from .results import build_report, to_json, to_markdown, to_text

    plan, store = _open(sweep, db, plan, missing_ok)
    try:
        result = build_report(plan, store)
    finally:
        store.close()
    render = {"text": to_text, "markdown": to_markdown, "json": to_json}.get(fmt)
    return render(result) if render else result


def status(sweep, db=None, plan=None):
    """Where the sweep stands: counts by state, per point, runs in flight, the live driver.
    Before the first start (no store yet) every planned run is pending; nothing is created."""
    from .standing import build_status

    plan, store = _open(sweep, db, plan, missing_ok=True)
    try:
        return build_status(plan, store)
    finally:
        store.close()


def list_sweeps():
    """Every shipped sweep file: ``{"name", "title", "runs", "description", "path"}``, by name
    (``explorer specs --sweeps``)."""
    from ..spec.catalog import SWEEPS, summary_line

    rows = []
    for name, path in SWEEPS.names().items():
        sweep = load_sweep(path)
        rows.append({"name": name, "title": sweep.name, "runs": len(make_plan(sweep).runs),
                     "description": summary_line(path), "path": str(path)})
    return rows


# The names explorer/__init__.py exports (``explorer.sweep_report``): explorer.analysis.report is a module.
sweep_report, sweep_status = report, status
