"""The Ray process's side of the ``ray`` executor (:mod:`explorer.sweep.ray_executor`): it
starts or joins Ray, submits each run as a Ray task and sends the outcomes back to the driver.

Each run's outcome names the node it ran on (its hostname and node IP: nodes in containers or
network namespaces of one machine share a hostname). A run whose node dies under it (the node
lost, not the run failing) is submitted again, up to ``NODE_RETRIES`` times, and lands on a node
that is still there; its outcome counts the extra tries.
"""

import math
import os
import signal
import socket

from ..training.corpus import digest, load_corpus
from ..errors import ExplorerError, one_line
from .executors import killed

LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray 2.60 binds 127.0.0.1 throughout
NEEDS_RAY = "--executor ray needs Ray: pip install -e \".[ray]\""
POLL_SECONDS = 0.1  # how long the Ray process waits on Ray before it reads the driver's requests
NODE_RETRIES = 2  # how many more times a run whose node died is submitted
# How long Ray's core worker waits for a GCS that stopped answering before it exits (Ray: 60 s)
GCS_RECONNECT = "RAY_gcs_rpc_server_reconnect_timeout_s"


class RayStopped(ExplorerError):
    """Ray itself failed (it did not start, or died under the sweep): no run can go on."""


def import_ray(local):
    """Ray, imported; for a Ray we start ourselves, set up to stay on the loopback interface;
    for a cluster at a routable address, not (inherited, the setting would make this process
    take 127.0.0.1 as its address and wait for a node that is not there)."""
    if local:
        os.environ[LOOPBACK_ONLY] = "0"  # read when ray is imported: set it first
    else:
        os.environ.pop(LOOPBACK_ONLY, None)
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


def run_on_a_node(task, corpus_text):
    """:func:`explorer.sweep.worker.execute_run` as a Ray task: its outcome's host names the node
    (hostname and node IP), which a cluster's nodes do not share."""
    import ray

    from .worker import execute_run

    outcome = execute_run(task, corpus_text)
    outcome["host"] = f"{outcome['host']} ({ray.util.get_node_ip_address()})"
    return outcome


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
        gpus = 1 if device.startswith("cuda") else 0
        # Resubmitted here, not by Ray (max_retries): only when the node died, and counted
        self._remote = ray.remote(run_on_a_node).options(num_cpus=threads, num_gpus=gpus,
                                                         max_retries=0)
        self._corpora = {}  # digest -> ObjectRef of the text
        self._tasks = {}  # ObjectRef -> task
        self._node_retries = {}  # run key -> how many times its node died under it

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
                outcome = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:
                if isinstance(exc, (self.ray.exceptions.LocalRayletDiedError,
                                    self.ray.exceptions.RaySystemError)) or not self._alive():
                    raise  # Ray itself, not this run: the sweep stops
                if self._run_again(task, exc):
                    continue
                # its worker died, or its node too often: this run only
                outcome = killed(task, one_line(f"its Ray task failed: "
                                                f"{type(exc).__name__}: {_first(exc)}"))
            retries = self._node_retries.pop(task["key"], 0)
            if retries:
                outcome["node_retries"] = retries
            outcomes.append(outcome)
        return outcomes

    def _run_again(self, task, exc):
        """Submit again a run whose node died under it (a run that did nothing wrong, which a
        live node can take); False once it has had ``NODE_RETRIES`` more tries."""
        tries = self._node_retries.get(task["key"], 0)
        if not isinstance(exc, self.ray.exceptions.NodeDiedError) or tries >= NODE_RETRIES:
            return False
        self._node_retries[task["key"]] = tries + 1
        self.submit(task)
        return True

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
        self._node_retries = {}

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
        if options["address"]:  # a head that went away: an error after --ray-timeout
            os.environ.setdefault(GCS_RECONNECT, str(math.ceil(options["timeout"])))
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
