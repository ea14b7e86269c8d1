"""Executors: where a sweep's runs execute. A small interface, so another engine can be added.

An executor takes tasks (plain data, :meth:`explorer.sweep.plan.Run.task`) and hands back
outcomes (plain data, :func:`explorer.sweep.worker.execute_run`); the driver alone writes the
store. The methods an engine implements:

- ``slots``: how many runs it executes at once;
- ``describe()``: one line saying where runs execute (``--dry-run`` prints it);
- ``submit(task) -> {"worker": ..., "host": ...}``: start a run; what is known of where it runs;
- ``wait(timeout) -> [outcome, ...]``: the runs that finished (possibly none) within ``timeout``
  seconds; a run whose worker died comes back ``failed`` with kind ``killed``; an outcome's
  ``node_retries`` counts the times the engine ran it again because its node died under it;
  an engine whose workers are all gone raises :class:`ExecutorLost`;
- ``cancel()``: abandon the runs in flight (the driver is being interrupted);
- ``close()``: release the workers. The driver closes an executor it made from a name; one
  passed to it as an object stays open for the caller to reuse.

``local`` (this module) runs worker processes on this machine; ``ray``
(:mod:`explorer.sweep.ray_executor`) runs each run as a Ray task, on a local Ray or a cluster.
"""

import multiprocessing
import multiprocessing.connection
import os
import signal
import socket

from ..errors import ExplorerError, UnknownNameError
from ..registry.components import resolve

# name -> "module:class", imported when chosen (Ray is an optional dependency).
EXECUTORS = {"local": "explorer.sweep.executors:LocalExecutor",
             "ray": "explorer.sweep.ray_executor:RayExecutor"}


class ExecutorLost(ExplorerError):
    """Every worker is gone mid-sweep (a cluster lost): the driver puts the runs in flight back
    to pending and ends the line with where the finished runs are and how to resume."""


def cpu_count():
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def killed(task, why):
    """The outcome of a run whose worker died under it."""
    return {"key": task["key"], "state": "failed", "failure": "killed",
            "reason": f"{why} during the run; it is retried at the next start"}


def make_executor(name, workers=None, threads=1, **options):
    """The executor called ``name``, ready to take runs."""
    if name not in EXECUTORS:
        raise UnknownNameError("executor", name, EXECUTORS, listed="known", where="--executor")
    return resolve(EXECUTORS[name])(workers=workers, threads=threads, **options)


class _Worker:
    def __init__(self, context):
        from .worker import worker_main

        self.conn, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child, os.getpid()),
                                       daemon=True, name="explorer-sweep-worker")
        self.process.start()
        child.close()
        self.task = None


class LocalExecutor:
    """Worker processes on this machine, each running one run at a time.

    Workers are started once (spawned: each imports torch once) and reused. A worker that dies
    (the OOM killer, a kill -9) costs only the run it had; a new one takes its place.
    """

    name = "local"

    def __init__(self, workers=None, threads=1, **ignored):
        self.threads = threads
        self.slots = workers or max(1, cpu_count() // threads)
        self._context = multiprocessing.get_context("spawn")  # fork is unsafe with torch's threads
        # Started now, so they import torch while the driver prepares the runs.
        self._workers = [_Worker(self._context) for _ in range(self.slots)]

    def describe(self):
        return local_description(self.slots, self.threads)

    def submit(self, task):
        worker = next((w for w in self._workers if w.task is None), None)
        if worker is None and len(self._workers) < self.slots:  # one died: replace it now
            worker = _Worker(self._context)
            self._workers.append(worker)
        if worker is None:
            raise ExplorerError("local executor: every worker is busy")
        worker.conn.send(task)
        worker.task = task
        return {"worker": str(worker.process.pid), "host": socket.gethostname()}

    def wait(self, timeout):
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            return []
        ready = set(multiprocessing.connection.wait(
            [w.conn for w in busy] + [w.process.sentinel for w in busy], timeout))
        outcomes = []
        for worker in busy:
            if worker.conn in ready or worker.conn.poll():
                try:
                    outcomes.append(worker.conn.recv())
                    worker.task = None
                    continue
                except (EOFError, OSError):
                    pass
            elif worker.process.sentinel not in ready:
                continue
            worker.process.join()
            outcomes.append(killed(worker.task, f"its worker process (pid {worker.process.pid}) "
                                   f"died ({exit_reason(worker.process.exitcode)})"))
            self._workers.remove(worker)
        return outcomes

    def cancel(self):
        for worker in [w for w in self._workers if w.task is not None]:
            worker.process.terminate()
            worker.process.join()
            self._workers.remove(worker)

    def close(self):
        self.cancel()
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self._workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        self._workers = []


def local_description(workers, threads):
    cores = cpu_count()
    used = workers * threads
    fit = "fits" if used <= cores else "OVERSUBSCRIBES"
    return (f"local: {workers} worker{'s' * (workers != 1)} x {threads} "
            f"thread{'s' * (threads != 1)} = {used} of {cores} cores ({fit} this machine)")


def exit_reason(code):
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
