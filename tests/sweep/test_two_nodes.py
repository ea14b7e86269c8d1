"""A sweep on a real two-node Ray cluster on this machine (tests/helpers/netns_cluster.py: two
network namespaces, a veth pair, private test addresses; the head in one, a worker node in the
other, the same venv, no dashboard), the driver in the head's namespace joining it by address.

1. The sweep runs on both nodes (the store's host column names each run's node), then the worker
   node is killed (SIGKILL to every process in its namespace) with a run in flight on it: that
   run is run again on the head, the sweep completes, every run is in the store once, and the
   report is the report of the same sweep run on one node.
2. The head is killed under the driver: one ``Error:`` line, exit code 2, nothing left running;
   the same command on a restarted head finishes the rest without running a done run again.

Slow (about a minute and a half on 2 cores): the default run skips it; ``.ci/run`` runs it. Root
and ``ip`` are needed to make the namespaces: skipped, with the reason, where they are not.
"""

import importlib.util
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explorer.sweep import load_sweep, make_plan, run_sweep
from tests.helpers.netns_cluster import (HEAD_IP, WORKER_IP, NamespaceError, TwoNodeCluster,
                                         why_no_namespaces)
from tests.helpers.processes import descendants
from tests.helpers.sweep_helpers import rows, wait_for, write_sweep

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                 reason="Ray is not installed: pip install -e '.[ray]'")]

STEPS = 300  # a run takes a few seconds here: the kills land mid-sweep, with runs in flight
RAY_TIMEOUT = 15  # seconds: the wait for a head that went away, too (Ray's own: 60)
HEAD, WORKER = f"{socket.gethostname()} ({HEAD_IP})", f"{socket.gethostname()} ({WORKER_IP})"


@pytest.fixture(scope="module")
def cluster():
    reason = why_no_namespaces()
    if reason:
        pytest.skip(reason)
    nodes = TwoNodeCluster()
    try:
        try:
            nodes.create()
        except NamespaceError as exc:
            pytest.skip(f"cannot make network namespaces here: {exc}")
        yield nodes
    finally:
        nodes.destroy()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The sweep (2 points x 3 seeds) and its report run on one node (this machine's local
    executor): what the cluster's report must equal."""
    folder = tmp_path_factory.mktemp("two-nodes")
    path = write_sweep(folder, seeds=[1, 2, 3], steps=STEPS, train={"eval_every": STEPS // 2})
    return path, run_sweep(path, executor="local", workers=2, db=folder / "one-node.sqlite")


def _comparable(report):
    """The report less what differs between two runs of a sweep on any executor: when it was
    made, its store, the executor, what it fed run trackers (none here; the Python API always
    says so, the command only when there were some), and the speed of each run. Every loss,
    curve and statistic stays, compared exactly: a run's numbers depend only on its seed and
    threads (1) on CPU."""
    report = {k: v for k, v in report.items()
              if k not in ("generated", "store", "executor", "tracking")}
    report["points"] = [{**p, "costs": {k: v for k, v in p["costs"].items()
                                        if k not in ("tokens_per_second", "seconds_per_run")}}
                        for p in report["points"]]
    return report


def _driver(cluster, path, db):
    """``explorer sweep`` in the head's namespace, joining the cluster by its address. Its
    environment asks for a loopback-only Ray, as one left over from a local sweep would: the
    executor must drop that to join a cluster at a routable address."""
    command = [sys.executable, "-m", "explorer", "sweep", str(path), "--executor", "ray",
               "--ray-address", cluster.address, "--ray-timeout", str(RAY_TIMEOUT), "--db", str(db),
               "--format", "json"]
    return subprocess.Popen(cluster.in_namespace(cluster.head, *command),
                            env=cluster.env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _runs(db):
    """key -> (state, host, attempts) straight from the store's file."""
    return rows(db, ("state", "host", "attempts"))


def test_a_sweep_runs_on_both_nodes_and_losing_the_worker_node_loses_no_run(cluster, sweep,
                                                                             tmp_path):
    path, one_node = sweep
    keys = [run.key for run in make_plan(load_sweep(path)).runs]
    cluster.start_head()
    cluster.start_worker()
    db = tmp_path / "cluster.sqlite"
    driver = _driver(cluster, path, db)
    try:
        wait_for(lambda: any(r[:2] == ("done", WORKER) for r in _runs(db).values()),
                 timeout=300, what="a run done on the worker node")
        wait_for(lambda: cluster.running_a_run(cluster.worker), timeout=120,
                 what="another run in flight on the worker node")
        done_on_worker = {k for k, r in _runs(db).items() if r[:2] == ("done", WORKER)}
        cluster.kill(cluster.worker)
        out, err = driver.communicate(timeout=300)
    finally:
        driver.kill()
    assert driver.returncode == 0, err
    runs = _runs(db)
    assert sorted(runs) == sorted(keys)  # each run in the store, once
    assert {state for state, _, _ in runs.values()} == {"done"}
    assert done_on_worker and {k for k, r in runs.items() if r[1] == WORKER} == done_on_worker
    # the run in flight on the worker node when it died: run again, on the head, counted
    retried = {k for k, r in runs.items() if r[2] == 2}
    assert len(retried) >= 1 and all(runs[k][1] == HEAD for k in retried)
    assert all(r[2] == 1 for k, r in runs.items() if k not in retried)
    assert _comparable(json.loads(out)) == _comparable(one_node)  # the report it printed


def test_the_driver_losing_the_head_says_so_in_one_line_and_a_restart_resumes(cluster, sweep,
                                                                                tmp_path):
    path, one_node = sweep
    cluster.kill(cluster.head)
    cluster.kill(cluster.worker)
    cluster.start_head(cpus=2)  # one node, two runs at once
    db = tmp_path / "cluster.sqlite"
    driver = _driver(cluster, path, db)
    try:
        wait_for(lambda: any(r[0] == "done" for r in _runs(db).values()), timeout=300,
                 what="a run done")
        # the head's Ray (GCS, raylet, its workers), not the driver in the same namespace
        cluster.kill(cluster.head, keep={driver.pid, *descendants(driver.pid)})
        clock = time.monotonic()
        out, err = driver.communicate(timeout=120)
        assert time.monotonic() - clock < 50  # the --ray-timeout wait, not Ray's minute
    finally:
        driver.kill()
    assert driver.returncode == 2 and out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"Error: lost the Ray cluster at {cluster.address}: ")
    assert err.endswith(f"; finished runs are in {db}; run the same command again to resume\n")
    log = Path(err.split("(Ray's output: ")[1].split(",")[0].split(")")[0])
    assert log.name.startswith("explorer-ray-")  # named, and kept for reading
    log.unlink()
    before = _runs(db)
    assert {state for state, _, _ in before.values()} == {"done", "pending"}  # none running
    done = {k: r for k, r in before.items() if r[0] == "done"}

    cluster.start_head(cpus=2)
    driver = _driver(cluster, path, db)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    after = _runs(db)
    assert len(after) == 6 and {r[0] for r in after.values()} == {"done"}
    assert {k: after[k] for k in done} == done  # done before: not run again
    assert _comparable(json.loads(out)) == _comparable(one_node)
