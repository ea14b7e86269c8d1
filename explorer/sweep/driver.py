"""The driver: runs a sweep's missing runs on an executor and records every state change.

It holds the store's lock for its lifetime, puts back to pending what a stopped driver left
running, then keeps the executor's slots full in seed-major order (every point's first seed
before any second seed, so a report mid-sweep already compares every point) and writes each
outcome as it comes. Ctrl-C or SIGTERM: the runs in flight are abandoned and put back to
pending, and the driver exits; a SIGKILL leaves them ``running`` for the next start to reset.
"""

import contextlib
import signal
import threading
from collections import deque
from pathlib import Path

from ..errors import ExplorerError
from .executors import make_executor
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


def execute(plan, store, engine, threads, retry_failed=False, progress=None):
    """Run the plan's runs that are not done on ``engine`` (an executor, or None when the caller
    found nothing to run); return its description, or None when nothing was left to run."""
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
        _drive(engine, store, deque(runs[k].task(threads) for k in todo), keys,
               progress or Progress(plan.sweep.name, enabled=False))
        return where


def execute_rounds(plan, store, engine, threads, retry_failed=False, progress=None):
    """:func:`execute` for a plan with adaptive seeds: in rounds, each running the runs the
    sequential schedule (explorer.sweep.sequential) wants after the last, until it wants no
    more; the schedule is read from the store, so a restart resumes it. Other plans: one
    round. Returns the executor's description, or None when nothing was left to run."""
    from .sequential import active_plan

    where = None
    while True:
        ran = execute(active_plan(plan, store), store, engine, threads, retry_failed, progress)
        if ran is None or not plan.sweep.adaptive:
            return ran or where
        where, retry_failed = ran, False  # a run failing again is not retried forever


def _drive(engine, store, queue, keys, progress):
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
                    progress.finished(outcome)
                    progress.update(store.counts(keys), engine.slots)
    except BaseException:
        # Interrupted (or failing): whatever is in flight, wherever the interrupt landed
        engine.cancel()
        store.release()
        raise
    finally:
        progress.close()


def run_sweep(sweep, executor="local", workers=None, threads=None, db=None, retry_failed=False,
              progress=None, plan=None, **options):
    """Run a sweep: what its store holds as done is kept, the rest is run; return the report.

    ``sweep`` is a path or a :class:`explorer.sweep.SweepFile`; ``executor`` ``"local"``
    (``workers`` processes), ``"ray"`` (``ray_address=`` joins a cluster, ``ray_timeout=``
    seconds to wait for Ray to start or answer; None: 60) or an executor object
    (:mod:`explorer.sweep.executors`), which is left open; ``threads`` per run
    (default: the sweep's ``train.threads``, else 1); ``db`` the SQLite store (default: beside
    the sweep file); ``retry_failed`` runs failed runs again (a run whose worker was killed is
    always retried). Raises :class:`explorer.ExplorerError` if another driver holds the store.
    """
    from .plan import make_plan
    from .results import build_report
    from .sweepfile import load_sweep

    if not hasattr(sweep, "grid"):
        sweep = load_sweep(sweep)
    plan = plan or make_plan(sweep)
    db = Path(db or sweep.default_store())
    threads = threads or getattr(executor, "threads", None) or default_threads(plan)
    engine = executor
    if isinstance(executor, str):
        # Started before the store is opened for writing: an executor that cannot start (a Ray
        # that is not there) leaves the store as it was, or not created. Nothing to run: none.
        from .sequential import active_plan

        peek = open_to_read(db, missing_ok=True)
        try:
            peek.refuse_if_driven()
            todo = _remaining(active_plan(plan, peek), peek, retry_failed)
        finally:
            peek.close()
        engine = make_executor(executor, workers, threads, device=plan.sweep.train.device,
                               **options) if todo else None
    try:
        store = Store(db)
        try:
            where = execute_rounds(plan, store, engine, threads, retry_failed, progress)
            report = build_report(plan, store)
        finally:
            store.close()
    finally:
        if engine is not None and engine is not executor:  # ours; the caller's stays open
            engine.close()
    report["executor"] = where
    return report
