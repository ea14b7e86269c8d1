"""The driver: runs a sweep's missing runs on an executor and records every state change.

It holds the store's lock for its lifetime, puts back to pending what a stopped driver left
running, then keeps the executor's slots full in seed-major order (every point's first seed
before any second seed, so a report mid-sweep already compares every point) and writes each
outcome as it comes. Ctrl-C or SIGTERM: the runs in flight are abandoned and put back to
pending, and the driver exits; a SIGKILL leaves them ``running`` for the next start to reset.

Run trackers (:mod:`explorer.tracking`: ``track:``, ``--track``) are fed here, in the driver's
process, each run right after the store has its outcome; a tracker that fails costs a warning.
"""

import contextlib
import signal
import threading
from collections import deque
from pathlib import Path

from ..errors import ExplorerError
from .executors import ExecutorLost, make_executor
from .progress import Progress
from .store import Store, open_to_read

POLL_SECONDS = 0.5


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM raises KeyboardInterrupt, so it stops the driver as cleanly as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def default_threads(plan):
    """Threads per run: the sweep's train.threads, else 1 (tiny models run best on one)."""
    return plan.sweep.train.threads or 1


def remaining(plan, db, retry_failed=False):
    """The keys of the plan's runs a start would run (in plan order), read without writing: the
    runs the store does not hold, pending ones, failed ones it retries, and those left running
    by a driver that is gone."""
    from .sequential import active_plan

    store = open_to_read(db, missing_ok=True)
    try:
        return _remaining(active_plan(plan, store), store, retry_failed)
    finally:
        store.close()


def _remaining(plan, store, retry_failed):
    keys = [run.key for run in plan.runs]
    held, todo = store.rows(keys, ["state"]), set(store.todo(keys, retry_failed))
    stale = set() if store.driver_running() else {
        k for k, row in held.items() if row["state"] == "running"}
    return [k for k in keys if k not in held or k in todo or k in stale]


def execute(plan, store, engine, threads, retry_failed=False, progress=None, trackers=None):
    """Run the plan's runs that are not done on ``engine`` (an executor, or None when the caller
    found nothing to run); return its description, or None when nothing was left to run.
    ``trackers`` (:class:`explorer.tracking.Trackers`) get each run once the store has it."""
    keys = [run.key for run in plan.runs]
    with store.driver_lock():
        store.add(plan, threads)
        store.reset_stale()
        todo = store.todo(keys, retry_failed)
        if not todo:
            return None
        if engine is None:  # another driver left runs between the caller's look and the lock
            raise ExplorerError(f"{store.path}: runs were left to do while this sweep started; "
                                "start it again")
        where = engine.describe()
        runs = {run.key: run for run in plan.runs}
        tasks = {k: runs[k].task(threads) for k in todo}
        recorded = None
        if trackers is not None and trackers.opened:
            from ..tracking import sweep_record

            def recorded(outcome):
                key = outcome["key"]
                point = runs[key].point.coords
                trackers.record(lambda: sweep_record(plan.sweep.name, tasks[key], point, outcome),
                                f"run {key}")
        _drive(engine, store, deque(tasks.values()), keys,
               progress or Progress(plan.sweep.name, enabled=False), recorded)
        return where


def execute_rounds(plan, store, engine, threads, retry_failed=False, progress=None,
                   trackers=None):
    """:func:`execute` for a plan with adaptive seeds: in rounds, each running the runs the
    sequential schedule (explorer.sweep.sequential) wants after the last, until it wants no
    more; the schedule is read from the store, so a restart resumes it. Other plans: one
    round. Returns the executor's description, or None when nothing was left to run."""
    from .sequential import active_plan

    where = None
    while True:
        ran = execute(active_plan(plan, store), store, engine, threads, retry_failed, progress,
                      trackers)
        if ran is None or not plan.sweep.adaptive:
            return ran or where
        where, retry_failed = ran, False  # a run failing again is not retried forever


def _drive(engine, store, queue, keys, progress, recorded=None):
    """Keep ``engine``'s slots full from ``queue``; write each outcome to the store, then hand
    it to ``recorded`` (the trackers), if given."""
    running = 0
    try:
        with _terminate_as_interrupt():
            progress.update(store.counts(keys), engine.slots)
            while queue or running:
                while queue and running < engine.slots:
                    task = queue.popleft()
                    where = engine.submit(task)
                    running += 1
                    store.start(task["key"], where.get("worker"), where.get("host"))
                    progress.update(store.counts(keys), engine.slots)
                for outcome in engine.wait(POLL_SECONDS):
                    running -= 1
                    store.finish(outcome)
                    if recorded is not None:
                        recorded(outcome)
                    progress.finished(outcome)
                    progress.update(store.counts(keys), engine.slots)
    except BaseException as exc:
        # Interrupted (or failing): whatever is in flight, wherever the interrupt landed
        engine.cancel()
        store.release()
        if isinstance(exc, ExecutorLost):
            raise ExecutorLost(f"{exc}; finished runs are in {store.path}; run the same "
                               "command again to resume") from None
        raise
    finally:
        progress.close()


def run_sweep(sweep, executor="local", workers=None, threads=None, db=None, retry_failed=False,
              progress=None, plan=None, track=None, plugins=None, warn=None, **options):
    """Run a sweep: what its store holds as done is kept, the rest is run; return the report.

    ``sweep`` is a path or a :class:`explorer.sweep.SweepFile`; ``executor`` ``"local"``
    (``workers`` processes), ``"ray"`` (``ray_address=`` joins a cluster, ``ray_timeout=``
    seconds to wait for Ray to start or answer; None: 60) or an executor object
    (:mod:`explorer.sweep.executors`), which is left open; ``threads`` per run
    (default: the sweep's ``train.threads``, else 1); ``db`` the SQLite store (default: beside
    the sweep file); ``retry_failed`` runs failed runs again (a run whose worker was killed is
    always retried). Raises :class:`explorer.ExplorerError` if another driver holds the store.

    ``track`` chooses run trackers as a sweep file's ``track:`` does (a name, a list, or names
    to options; None: the file's ``track:``), looked up in ``plugins`` (a plugin manager;
    default: a fresh one), checked and opened before any run starts; the report's ``tracking``
    lists them and the warning lines of any that failed (each also passed to ``warn``,
    default: printed to stderr).
    """
    from .plan import make_plan
    from .results import build_report
    from .sweepfile import load_sweep

    if not hasattr(sweep, "grid"):
        sweep = load_sweep(sweep)
    plan = plan or make_plan(sweep, plugins)
    db = Path(db or sweep.default_store())
    threads = threads or getattr(executor, "threads", None) or default_threads(plan)
    engine, todo = executor, True
    if isinstance(executor, str):  # what is left to run, read before anything starts
        from .sequential import active_plan

        peek = open_to_read(db, missing_ok=True)
        try:
            peek.refuse_if_driven()
            todo = _remaining(active_plan(plan, peek), peek, retry_failed)
        finally:
            peek.close()
    # Before the executor starts, so a tracker that cannot start costs nothing.
    trackers = _open_trackers(sweep, track, plugins, db, warn)
    try:
        if isinstance(executor, str):
            # Started before the store is opened for writing: an executor that cannot start (a
            # Ray that is not there) leaves the store as it was, or not created. Nothing to
            # run: none.
            engine = make_executor(executor, workers, threads, device=plan.sweep.train.device,
                                   **options) if todo else None
        store = Store(db)
        try:
            where = execute_rounds(plan, store, engine, threads, retry_failed, progress,
                                   trackers)
            report = build_report(plan, store)
        finally:
            store.close()
    finally:
        if engine is not None and engine is not executor:  # ours; the caller's stays open
            engine.close()
        trackers.close()
    report["executor"] = where
    report["tracking"] = {"trackers": trackers.names, "warnings": trackers.warnings}
    return report


def _open_trackers(sweep, track, plugins, db, warn):
    """The sweep's trackers, checked (names, options, installed) and opened before any run."""
    from ..registry.plugin_manager import get_plugin_manager
    from ..tracking import choose, open_trackers, parse_track

    chosen = sweep.track if track is None else parse_track(track, "", "track")
    if not chosen:
        return open_trackers([], db.parent, sweep.name, sweep.source, warn)
    registry = (plugins or get_plugin_manager()).registry()
    source = sweep.source if track is None else ""  # the file's track:, or the caller's
    return open_trackers(choose(chosen, registry, source), db.parent, sweep.name, sweep.source,
                         warn)
