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

from .executors import make_executor
from .progress import Progress
from .store import Store

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


def execute(plan, store, executor="local", workers=None, threads=None, retry_failed=False,
            progress=None, **options):
    """Run the plan's runs that are not done; return the executor's description (or None).

    ``executor`` is a name (the driver makes the executor and closes it) or an executor object
    (the caller's: it stays open).
    """
    threads = threads or getattr(executor, "threads", None) or default_threads(plan)
    keys = [run.key for run in plan.runs]
    with store.driver_lock():
        store.add(plan, threads)
        store.reset_stale()
        todo = store.todo(keys, retry_failed)
        if not todo:
            return None
        owned = isinstance(executor, str)
        engine = make_executor(executor, workers, threads, device=plan.sweep.train.device,
                               **options) if owned else executor
        try:
            where = engine.describe()
            runs = {run.key: run for run in plan.runs}
            _drive(engine, store, deque(runs[k].task(threads) for k in todo), keys,
                   progress or Progress(plan.sweep.name, enabled=False))
        finally:
            if owned:
                engine.close()
        return where


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
    (``workers`` processes), ``"ray"`` (``ray_address=`` joins a cluster) or an executor object
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
    store = Store(db or sweep.default_store())
    try:
        where = execute(plan, store, executor, workers, threads, retry_failed, progress,
                        **options)
        report = build_report(plan, store)
    finally:
        store.close()
    report["executor"] = where
    return report
