"""The ``ray`` executor: each run is a Ray task; results come back to the driver, which writes
the store.

Without an address it starts a local Ray that listens on 127.0.0.1 only, with no dashboard
(hence no job server); with ``ray_address`` (``host:6379``, the head's GCS address) it joins a
running cluster: run the driver on a node of that cluster. Every node needs explorer installed
(and, for plugin files, the same paths). The corpus text travels through Ray's object store,
once per sweep. A task asks for ``num_cpus`` = the threads per run, and ``num_gpus=1`` when the
runs train on CUDA.

Ray is driven from a process of its own (:func:`ray_process_main`, spawned by the executor),
never from the sweep's driver: a Ray that cannot be reached blocks in C++ for many minutes, one
whose raylet dies ends the process that talks to it (Ray's core worker exits), and both print
pages of C++ logs. In its own process, with its output sent to a log file, any of these costs
the sweep one line of error (naming the log) and the driver puts the runs in flight back to
pending. The executor waits ``ray_timeout`` seconds for Ray to start or answer.

If Ray is already initialised in this process (a notebook, a test), the Ray process joins that
Ray, which is left running.
"""

import importlib.util
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import tempfile
import time

from ..training.corpus import digest, load_corpus
from ..errors import ExplorerError, one_line
from .executors import exit_reason, killed

LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray 2.60 binds 127.0.0.1 throughout
NEEDS_RAY = "--executor ray needs Ray: pip install -e \".[ray]\""
DEFAULT_TIMEOUT = 60.0  # seconds to wait for Ray to start, or a cluster to answer
POLL_SECONDS = 0.1  # how long the Ray process waits on Ray before it reads the driver's requests
CLOSE_SECONDS = 20  # how long ray.shutdown() may take before the Ray process is killed


class RayStopped(ExplorerError):
    """Ray itself failed (it did not start, or died under the sweep): no run can go on."""


def import_ray(local):
    """Ray, imported; for a Ray we start ourselves, set up to stay on the loopback interface."""
    if local:
        os.environ[LOOPBACK_ONLY] = "0"  # read when ray is imported: set it first
    try:
        import ray
    except ImportError:
        raise ExplorerError(NEEDS_RAY) from None
    return ray


def _loopback(address):
    """A cluster on this machine's loopback (``ray start --head --node-ip-address=127.0.0.1``):
    the driver must take 127.0.0.1 as its own address too, or it waits for a node that is not
    there."""
    host = address.removeprefix("ray://").rpartition(":")[0] or address
    return host == "localhost" or host.startswith("127.")


def start_local_ray(ray, cpus=None):
    """A Ray of our own on this machine: loopback only, no dashboard, quiet."""
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)


def _this_process_ray():
    """The GCS address of the Ray this process is connected to, or None (nothing imported)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().gcs_address
    return None


# -- in the Ray process: the calls to Ray ---------------------------------------------------

class RaySession:
    """Ray, started or joined, running tasks: what the Ray process does with ``ray``."""

    def __init__(self, ray, workers=None, threads=1, address=None, device="cpu"):
        self.ray = ray
        if address:
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            except ConnectionError as exc:
                raise RayStopped(f"--ray-address {address}: cannot connect: "
                                 f"{one_line(exc)}") from None
        else:
            start_local_ray(ray, workers * threads if workers else None)
        from .worker import execute_run

        gpus = 1 if device.startswith("cuda") else 0
        self._remote = ray.remote(execute_run).options(num_cpus=threads, num_gpus=gpus,
                                                       max_retries=0)
        self._corpora = {}  # digest -> ObjectRef of the text
        self._tasks = {}  # ObjectRef -> task

    def info(self):
        return {"cpus": int(self.ray.cluster_resources().get("CPU", 1)),
                "nodes": sorted(n["NodeManagerAddress"] for n in self.ray.nodes()
                                if n.get("Alive"))}

    def _corpus(self, task):
        wanted = task["corpus_digest"]
        if wanted not in self._corpora:
            text, source = load_corpus(task["train"]["corpus"])
            if digest(text) != wanted:
                raise ExplorerError(f"train: corpus {source} changed since the sweep was "
                                    "planned; start the sweep again")
            self._corpora[wanted] = self.ray.put(text)
        return self._corpora[wanted]

    def submit(self, task):
        self._tasks[self._remote.remote(task, self._corpus(task))] = task

    def finished(self, timeout):
        """The outcomes of the tasks that finished within ``timeout`` seconds."""
        if not self._tasks:
            return []
        refs = list(self._tasks)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        outcomes = []
        for ref in ready:
            task = self._tasks.pop(ref)
            try:
                outcomes.append(self.ray.get(ref))
            except self.ray.exceptions.RayError as exc:
                if isinstance(exc, (self.ray.exceptions.LocalRayletDiedError,
                                    self.ray.exceptions.RaySystemError)) or not self._alive():
                    raise  # Ray itself, not this run: the sweep stops
                # its worker or another node died: this run only
                outcomes.append(killed(task, one_line(f"its Ray task failed: "
                                                      f"{type(exc).__name__}: {_first(exc)}")))
        return outcomes

    def _alive(self):
        """Whether this process's raylet still answers: a run that failed because it died did
        nothing wrong, and no other run can go on. (Asked directly: Ray's own view of its nodes
        takes seconds of missed heartbeats to learn of a death.)"""
        try:
            here = self.ray.get_runtime_context().get_node_id()
            node = next(n for n in self.ray.nodes() if n["NodeID"] == here)
            with socket.create_connection((node["NodeManagerAddress"], node["NodeManagerPort"]),
                                          timeout=5):
                return node["Alive"]
        except Exception:  # refused, or Ray cannot even say
            return False

    def cancel(self):
        for ref in self._tasks:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # a task that already finished cannot be cancelled
                pass
        self._tasks = {}

    def close(self):
        self.cancel()
        self.ray.shutdown()  # stops a Ray it started; leaves a cluster it joined running

    def serve(self, conn):
        """Take ``("submit", task)``, ``("cancel",)`` and ``None`` (stop) from ``conn``; send
        back ``("outcome", outcome)`` as runs finish. Returns when told to stop or when the
        driver is gone."""
        try:
            while True:
                while conn.poll(0 if self._tasks else POLL_SECONDS):
                    request = conn.recv()
                    if request is None:
                        return
                    if request[0] == "submit":
                        self.submit(request[1])
                    else:
                        self.cancel()
                for outcome in self.finished(POLL_SECONDS):
                    conn.send(("outcome", outcome))
        except (EOFError, BrokenPipeError, ConnectionResetError):  # the driver is gone
            return


def _first(exc):
    """The first sentence of an error: Ray's go on for lines of advice."""
    text = str(exc).strip()
    return text.splitlines()[0].split(". ")[0].rstrip(".") if text else ""


def _send_output_to(log):
    """This process's stdout and stderr (Ray's C++ logs included) into the file ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    for stream in (1, 2):
        os.dup2(fd, stream)
    os.close(fd)


def ray_process_main(conn, options):
    """The Ray process: start or join Ray, say ``("ready", info)``, run the driver's tasks.

    Anything that ends it early is sent as ``("error", message, about_ray)`` first; a death it
    cannot report (Ray's core worker exiting, a C++ abort) the executor sees as the process
    ending."""
    from .worker import die_with_parent

    _send_output_to(options["log"])
    die_with_parent(options["parent"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    session = None
    try:
        ray = import_ray(local=not options["address"] or _loopback(options["address"]))
        try:
            session = RaySession(ray, options["workers"], options["threads"],
                                 options["address"], options["device"])
        except ExplorerError:
            raise
        except Exception as exc:
            raise RayStopped(f"Ray failed to start: {type(exc).__name__}: {_first(exc)}") from exc
        _tell(conn, ("ready", session.info()))
        try:
            session.serve(conn)
        except ray.exceptions.RayError as exc:  # what a run's own failure is never raised as
            raise RayStopped(f"Ray stopped mid-sweep: {type(exc).__name__}: "
                             f"{_first(exc)}") from exc
    except RayStopped as exc:
        _tell(conn, ("error", str(exc), True))
    except ExplorerError as exc:  # the sweep's own (a corpus that changed): not about Ray
        _tell(conn, ("error", str(exc), False))
    except Exception as exc:
        _tell(conn, ("error", one_line(f"the Ray process failed: {type(exc).__name__}: "
                                       f"{_first(exc)}"), True))
    finally:
        if session is not None:
            session.close()


def _tell(conn, message):
    try:
        conn.send(message)
    except OSError:
        pass


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
                                            "parent": os.getpid()}))
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
            what = "Ray failed to start" if starting else "Ray stopped mid-sweep"
            text = (f"{what}: the process that drives it ended "
                    f"({exit_reason(self._process.exitcode)})")
            output = self._output(last_line=True)
        else:
            text, output = message[1], self._output()
        resume = "" if starting else ("; the runs in flight are pending again: start the sweep "
                                      "again to resume")
        raise RayStopped(f"{text}{resume}{output}")

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
