"""The ``ray`` executor: each run is a Ray task; results come back to the driver, which writes
the store.

Without an address it starts a local Ray that listens on 127.0.0.1 only, with no dashboard
(hence no job server); with ``ray_address`` (``host:6379``, the head's GCS address) it joins a
running cluster: run the driver on a node of that cluster. Every node needs explorer installed
(and, for plugin files, the same paths). The corpus text travels through Ray's object store,
once per sweep. A task asks for ``num_cpus`` = the threads per run, and ``num_gpus=1`` when the
runs train on CUDA.

If Ray is already initialised in this process (a notebook, a test), it is used as it is and
left running.
"""

import os

from ..training.corpus import digest, load_corpus
from ..errors import ExplorerError, one_line
from .executors import killed

LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray 2.60 binds 127.0.0.1 throughout


def import_ray(local):
    """Ray, imported; for a Ray we start ourselves, set up to stay on the loopback interface."""
    if local:
        os.environ[LOOPBACK_ONLY] = "0"  # read when ray is imported: set it first
    try:
        import ray
    except ImportError:
        raise ExplorerError("--executor ray needs Ray: pip install -e \".[ray]\"") from None
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


class RayExecutor:
    name = "ray"

    def __init__(self, workers=None, threads=1, ray_address=None, device="cpu", **ignored):
        ray = self.ray = import_ray(local=ray_address is None or _loopback(ray_address))
        self.threads, self.address = threads, ray_address
        self.started = not ray.is_initialized()
        if self.started:
            if ray_address:
                try:
                    ray.init(address=ray_address, logging_level="ERROR", log_to_driver=False)
                except ConnectionError as exc:
                    raise ExplorerError(f"--ray-address {ray_address}: cannot connect: "
                                        f"{one_line(exc)}") from None
            else:
                start_local_ray(ray, workers * threads if workers else None)
        self.cpus = int(ray.cluster_resources().get("CPU", 1))
        self.slots = workers or max(1, self.cpus // threads)
        from .worker import execute_run

        gpus = 1 if device.startswith("cuda") else 0
        self._remote = ray.remote(execute_run).options(num_cpus=threads, num_gpus=gpus,
                                                       max_retries=0)
        self._corpora = {}  # digest -> ObjectRef of the text
        self._tasks = {}  # ObjectRef -> task

    def describe(self):
        where = f"the cluster at {self.address}" if self.address else "a local Ray on 127.0.0.1"
        nodes = len([n for n in self.ray.nodes() if n.get("Alive")])
        return (f"ray: {self.slots} runs at once on {where} ({nodes} node{'s' * (nodes != 1)}, "
                f"{self.cpus} CPUs); each run asks for num_cpus={self.threads}")

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
        ref = self._remote.remote(task, self._corpus(task))
        self._tasks[ref] = task
        return {}

    def wait(self, timeout):
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
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                outcomes.append(killed(task, one_line(f"its Ray task failed: "
                                                      f"{type(exc).__name__}: {first}")))
        return outcomes

    def cancel(self):
        for ref in self._tasks:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # a task that already finished cannot be cancelled
                pass
        self._tasks = {}

    def close(self):
        self.cancel()
        if self.started:
            self.ray.shutdown()
