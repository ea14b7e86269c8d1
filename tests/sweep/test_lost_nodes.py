"""What the Ray executor does when a node goes away, without a cluster (tests/sweep/
test_two_nodes.py does it on real nodes, marked slow): a run whose node died is submitted again
and its store row counts the tries; a cluster lost under the driver is one line that names the
store; joining a cluster by its address drops a loopback-only Ray setting."""

import multiprocessing
import os
import sys
import types

import pytest

import explorer
from explorer.sweep import load_sweep, make_plan, run_sweep
from explorer.sweep.executors import ExecutorLost
from explorer.sweep.ray_executor import ClusterLost, RayExecutor
from explorer.sweep.ray_session import LOOPBACK_ONLY, NODE_RETRIES, RaySession, import_ray
from explorer.sweep.store import Store
from tests.helpers.sweep_helpers import outcome, rows, write_sweep


class RayError(Exception):
    pass


class NodeDiedError(RayError):
    pass


class WorkerCrashedError(RayError):
    pass


class ScriptedRay:
    """Enough of ``ray`` for a RaySession: each submission of a run takes the next of its
    scripted results (an exception class is raised by ``get``, anything else returned)."""

    exceptions = types.SimpleNamespace(
        RayError=RayError, NodeDiedError=NodeDiedError, WorkerCrashedError=WorkerCrashedError,
        LocalRayletDiedError=type("LocalRayletDiedError", (RayError,), {}),
        RaySystemError=type("RaySystemError", (RayError,), {}))

    def __init__(self, script):
        self.script, self.submitted, self._results = script, [], {}

    def init(self, **options):
        pass

    def remote(self, fn):
        ray = self

        class Remote:
            def options(self, **options):
                return self

            def remote(self, task, corpus):
                ray.submitted.append(task["key"])
                ref = object()
                ray._results[ref] = ray.script[task["key"]].pop(0)
                return ref

        return Remote()

    def wait(self, refs, num_returns=1, timeout=None):
        return list(refs), []

    def get(self, ref):
        result = self._results.pop(ref)
        if isinstance(result, type) and issubclass(result, Exception):
            raise result("Task failed because the node it was running on is dead. More text.")
        return result


def test_a_run_whose_node_died_is_submitted_again_up_to_the_limit_then_recorded_killed():
    done = {"key": "a", "state": "done"}
    script = {"a": [NodeDiedError, NodeDiedError, done],  # a live node takes it the third time
              "b": [NodeDiedError] * (NODE_RETRIES + 1),  # every node it gets dies
              "c": [WorkerCrashedError],  # its worker died, its node did not: not run again here
              "d": [dict(key="d", state="done")]}
    ray = ScriptedRay(script)
    session = RaySession(ray, address="10.0.0.1:6379")
    session._alive = lambda: True  # this process's raylet answers
    session._corpora["digest"] = "the corpus's ref"
    for key in script:
        session.submit({"key": key, "corpus_digest": "digest"})
    outcomes = {}
    while session._tasks:
        outcomes.update((o["key"], o) for o in session.finished(0))
    assert ray.submitted.count("a") == 3 and ray.submitted.count("b") == NODE_RETRIES + 1
    assert ray.submitted.count("c") == 1 and ray.submitted.count("d") == 1
    assert outcomes["a"] == {"key": "a", "state": "done", "node_retries": 2}
    assert outcomes["b"] == {
        "key": "b", "state": "failed", "failure": "killed", "node_retries": NODE_RETRIES,
        "reason": "its Ray task failed: NodeDiedError: Task failed because the node it was "
                  "running on is dead during the run; it is retried at the next start"}
    assert outcomes["c"]["failure"] == "killed" and "node_retries" not in outcomes["c"]
    assert outcomes["d"] == {"key": "d", "state": "done"}


def test_the_store_counts_the_tries_an_executor_made_by_itself(tmp_path):
    path = write_sweep(tmp_path)
    plan = make_plan(load_sweep(path))
    a, b = (run.key for run in plan.runs[:2])
    store = Store(tmp_path / "s.sqlite")
    with store.driver_lock():
        store.add(plan, 1)
        store.start(a)
        store.finish({**outcome(a, 2.0), "node_retries": 1})
        store.start(b)
        store.finish(outcome(b, 2.1))
        assert store.rows([a])[a]["attempts"] == 2 and store.rows([b])[b]["attempts"] == 1
    store.close()


class LosesItsClusterAfterOneRun:
    """An executor whose cluster goes away once its first run is done."""

    name, slots, threads = "lost", 2, 1

    def __init__(self):
        self.running, self.waits = [], 0

    def describe(self):
        return "a cluster about to go"

    def submit(self, task):
        self.running.append(task["key"])
        return {}

    def wait(self, timeout):
        self.waits += 1
        if self.waits == 1:
            return [outcome(self.running.pop(0), 2.0)]
        raise ExecutorLost("lost the Ray cluster at 10.0.0.1:6379: its head went away")

    def cancel(self):
        self.running = []

    def close(self):
        pass


def test_a_cluster_lost_mid_sweep_names_the_store_and_its_runs_in_flight_go_back(tmp_path):
    path = write_sweep(tmp_path)  # 4 runs
    db = tmp_path / "s.sqlite"
    with pytest.raises(explorer.ExplorerError) as raised:
        run_sweep(path, executor=LosesItsClusterAfterOneRun(), db=db)
    assert str(raised.value) == (
        f"lost the Ray cluster at 10.0.0.1:6379: its head went away; finished runs are in {db}; "
        "run the same command again to resume")
    assert sorted(state for state, *_ in rows(db).values()) == ["done", "pending", "pending",
                                                                 "pending"]


def _sends(conn, message):
    conn.send(message)


@pytest.mark.parametrize("address, message", [
    ("10.0.0.1:6379", "lost the Ray cluster at 10.0.0.1:6379: RaySystemError: the GCS is gone"),
    (None, "Ray stopped mid-sweep: RaySystemError: the GCS is gone; the runs in flight are "
           "pending again: start the sweep again to resume"),
])
def test_ray_stopping_mid_sweep_is_a_lost_cluster_when_the_sweep_joined_one(tmp_path, address,
                                                                            message):
    context = multiprocessing.get_context("fork")
    conn, child = context.Pipe()
    process = context.Process(target=_sends, args=(child, (
        "error", "Ray stopped mid-sweep: RaySystemError: the GCS is gone", True)))
    process.start()
    executor = RayExecutor.__new__(RayExecutor)  # its Ray process: the one above
    executor.address, executor._conn, executor._process = address, conn, process
    executor.log = str(tmp_path / "empty.log")
    (tmp_path / "empty.log").write_text("")
    with pytest.raises(ClusterLost if address else explorer.ExplorerError) as raised:
        executor._receive(30)
    process.join()
    assert str(raised.value) == message
    assert isinstance(raised.value, ExecutorLost) == bool(address)


def test_joining_a_cluster_by_address_drops_a_loopback_only_setting(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))  # no real import
    monkeypatch.setenv(LOOPBACK_ONLY, "0")  # left by a local sweep, or set by hand
    import_ray(local=False)
    assert LOOPBACK_ONLY not in os.environ  # Ray would take 127.0.0.1 as this node's address
    import_ray(local=True)
    assert os.environ[LOOPBACK_ONLY] == "0"
