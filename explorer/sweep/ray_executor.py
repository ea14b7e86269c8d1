"""The ``ray`` executor: each run is a Ray task; results come back to the driver, which writes
the store.

Without an address it starts a local Ray that listens on 127.0.0.1 only, with no dashboard
(hence no job server); with ``ray_address`` (``host:6379``, the head's GCS address) it joins a
running cluster: run the driver on a node of that cluster. Every node needs explorer installed
(and, for plugin files, the same paths). The corpus text travels through Ray's object store,
once per sweep. A task asks for ``num_cpus`` = the threads per run, and ``num_gpus=1`` when the
runs train on CUDA.

Ray is driven from a process of its own (:func:`explorer.sweep.ray_session.ray_process_main`,
spawned by the executor), never from the sweep's driver: a Ray that cannot be reached blocks in
C++ for many minutes, one whose raylet dies ends the process that talks to it (Ray's core worker
exits), and both print pages of C++ logs. In its own process, with its output sent to a log
file, any of these costs the sweep one line of error (naming the log) and the driver puts the
runs in flight back to pending. The executor waits ``ray_timeout`` seconds for Ray to start or
answer (mid-sweep, for a cluster's GCS too: Ray's own wait is a minute). A cluster lost mid-sweep
(its head gone, or the driver's own node) is :class:`ClusterLost`, whose line the driver ends
with where the finished runs are and how to resume.

If Ray is already initialised in this process (a notebook, a test), the Ray process joins that
Ray, which is left running.
"""

import importlib.util
import multiprocessing
import multiprocessing.connection
import os
import sys
import tempfile
import time

from ..errors import ExplorerError
from .executors import ExecutorLost, exit_reason
from .ray_session import NEEDS_RAY, RayStopped, ray_process_main

DEFAULT_TIMEOUT = 60.0  # seconds to wait for Ray to start, or a cluster to answer
CLOSE_SECONDS = 20  # how long ray.shutdown() may take before the Ray process is killed
STOPPED = "Ray stopped mid-sweep: "


class ClusterLost(RayStopped, ExecutorLost):
    """The cluster at ``--ray-address`` went away under the sweep (its head, or the node the
    driver runs on): the runs in flight are lost, the finished ones are in the store."""


def _this_process_ray():
    """The GCS address of the Ray this process is connected to, or None (nothing imported)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().gcs_address
    return None


# -- in the driver: the executor -------------------------------------------------------------

class RayExecutor:
    name = "ray"

    def __init__(self, workers=None, threads=1, ray_address=None, device="cpu",
                 ray_timeout=None, **ignored):
        ray_timeout = DEFAULT_TIMEOUT if ray_timeout is None else ray_timeout
        if not (isinstance(ray_timeout, (int, float)) and ray_timeout > 0):
            raise ExplorerError(f"--ray-timeout: expected seconds > 0, got {ray_timeout!r}")
        if _this_process_ray() is None and importlib.util.find_spec("ray") is None:
            raise ExplorerError(NEEDS_RAY)
        self.threads, self.address, self.timeout = threads, ray_address, ray_timeout
        handle, self.log = tempfile.mkstemp(prefix="explorer-ray-", suffix=".log")
        os.close(handle)
        self._keep_log = False
        context = multiprocessing.get_context("spawn")  # a fresh process: Ray's threads, not ours
        self._conn, child = context.Pipe()
        self._process = context.Process(target=ray_process_main, daemon=True, name="explorer-ray",
                                        args=(child, {
                                            "workers": workers, "threads": threads,
                                            "address": ray_address or _this_process_ray(),
                                            "device": device, "log": self.log,
                                            "parent": os.getpid(), "timeout": ray_timeout}))
        self._process.start()
        child.close()
        self._tasks = {}  # key -> task, the runs in flight
        try:
            info = self._ready()
        except BaseException:
            self.close()
            raise
        self.cpus, self.nodes = info["cpus"], info["nodes"]
        self.slots = workers or max(1, self.cpus // threads)

    def _ready(self):
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._receive(max(0.0, deadline - time.monotonic()), starting=True)
            if message is not None:
                return message[1]
            if time.monotonic() >= deadline:
                self._stop_process()
                if self.address:
                    raise RayStopped(
                        f"--ray-address {self.address}: no Ray cluster answered within "
                        f"{self.timeout:g} s (--ray-timeout); check the address, and that its "
                        "head runs (ray start --head --port=6379)")
                raise RayStopped(f"Ray did not start within {self.timeout:g} s (--ray-timeout)"
                                 f"{self._output()}")

    def _receive(self, timeout, starting=False):
        """The Ray process's next message within ``timeout`` seconds, or None; raise when it sent
        an error or ended."""
        if not multiprocessing.connection.wait([self._conn, self._process.sentinel], timeout):
            return None
        message = None
        try:
            if self._conn.poll():
                message = self._conn.recv()
        except (EOFError, OSError):
            pass
        if message is not None and message[0] != "error":
            return message
        if message is not None and not message[2]:
            raise ExplorerError(message[1])  # the sweep's own (a corpus that changed)
        if message is None:
            self._process.join()
            what = "Ray failed to start: " if starting else STOPPED
            text = (f"{what}the process that drives it ended "
                    f"({exit_reason(self._process.exitcode)})")
            output = self._output(last_line=True)
        else:
            text, output = message[1], self._output()
        if starting:
            raise RayStopped(f"{text}{output}")
        if self.address:  # the driver adds where the finished runs are, and how to resume
            raise ClusterLost(f"lost the Ray cluster at {self.address}: "
                              f"{text.removeprefix(STOPPED)}{output}")
        raise RayStopped(f"{text}; the runs in flight are pending again: start the sweep again "
                         f"to resume{output}")

    def _output(self, last_line=False):
        """Where Ray's output is (and its last line), for an error message: the log is kept."""
        try:
            with open(self.log, errors="replace") as f:
                lines = [line.strip() for line in f if line.strip() and not line[0].isspace()]
        except OSError:
            return ""
        if not lines:
            return ""
        last = f", last line: {lines[-1][:200]}" if last_line else ""
        self._keep_log = True
        return f" (Ray's output: {self.log}{last})"

    def describe(self):
        where = f"the cluster at {self.address}" if self.address else "a local Ray on 127.0.0.1"
        nodes = len(self.nodes)
        return (f"ray: {self.slots} runs at once on {where} ({nodes} node{'s' * (nodes != 1)}, "
                f"{self.cpus} CPUs); each run asks for num_cpus={self.threads}")

    def submit(self, task):
        self._send(("submit", task))
        self._tasks[task["key"]] = task
        return {}

    def wait(self, timeout):
        if not self._tasks:
            return []
        outcomes = []
        message = self._receive(timeout)
        while message is not None:  # what came, then whatever else is already there
            outcome = message[1]
            self._tasks.pop(outcome["key"], None)
            outcomes.append(outcome)
            message = self._receive(0)
        return outcomes

    def _send(self, request):
        try:
            self._conn.send(request)
        except OSError:  # it ended: say why (what it sent before is lost: those runs are rerun)
            while True:
                self._receive(None)

    def cancel(self):
        if self._tasks and self._process.is_alive():
            try:
                self._conn.send(("cancel",))
            except OSError:
                pass
        self._tasks = {}

    def close(self):
        """Stop the Ray process (and a Ray it started); remove its log unless an error named
        it."""
        self.cancel()
        if self._process.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._process.join(CLOSE_SECONDS)
        self._stop_process()
        self._conn.close()
        if not self._keep_log:
            try:
                os.remove(self.log)
            except OSError:
                pass

    def _stop_process(self):
        """Kill the Ray process, stuck in Ray (a Ray it started dies with it: Ray's processes
        share their parent's fate)."""
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
