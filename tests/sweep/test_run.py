"""Sweeps for real: local worker processes and a real local Ray, the store across starts and
edits, divergence, and kills (SIGINT and SIGKILL of the driver, SIGKILL of a worker)."""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys

import pytest
import yaml

import explorer
from explorer.cli import main
from explorer.training.corpus import tokenize
from explorer.sweep import load_sweep, make_plan, run_sweep
from explorer.sweep.store import Store
from explorer.sweep.executors import LocalExecutor
from explorer.model.tokenizer import get_tokenizer
from explorer.training.settings import TrainConfig
from tests.helpers.sweep_helpers import CORPUS, NAN_PLUGIN, TINY, rows, wait_for, write_sweep


@pytest.fixture(scope="module")
def local():
    """Two worker processes shared by this module's in-process sweeps (each imports torch once)."""
    executor = LocalExecutor(workers=2, threads=1)
    yield executor
    executor.close()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, local):
    folder = tmp_path_factory.mktemp("sweep")
    path = write_sweep(folder)  # norm: layernorm, rmsnorm; seeds 1, 2; 20 steps
    return path, run_sweep(path, executor=local)


def test_a_sweep_runs_every_point_on_every_seed_once(finished, write_spec):
    path, result = finished
    assert result["counts"] == {"pending": 0, "running": 0, "done": 4, "failed": 0}
    assert result["executor"].startswith("local: 2 workers x 1 thread = 2 of ")
    assert all(attempts == 1 for _, _, attempts, *_ in rows(path.with_suffix(".sqlite")).values())
    layernorm = result["points"][0]
    assert layernorm["final_val_loss"]["n"] == 2 and layernorm["curve"]["tokens"] == [0, 640, 1280]
    assert result["points"][1]["delta"]["n"] == 2
    # a run is the core training loop on the point's spec with the run's seed: the same numbers
    spec = explorer.load_spec(write_spec(TINY))
    config = TrainConfig.from_dict({"batch_size": 4, "seq_len": 16, "lr": 3e-3, "eval_every": 10,
                                    "eval_tokens": 256, "steps": 20})
    corpus = tokenize(CORPUS, "corpus", get_tokenizer("bytes"), "bytes")
    alone = explorer.train(explorer.build_model(spec, seed=2), spec, config, corpus=corpus, seed=2)
    run = next(r for r in make_plan(load_sweep(path)).runs
               if r.seed == 2 and r.point.label == "norm=layernorm")
    store = Store(path.with_suffix(".sqlite"), readonly=True)
    row = store.rows([run.key])[run.key]
    store.close()
    assert row["metrics"]["final_val_loss"] == alone["final_val_loss"]
    assert row["curve"] == alone["curve"]


def test_a_second_start_runs_nothing_and_an_edit_keeps_matching_results(finished, local, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(finished[0].parent, folder)
    path, db = folder / "sweep.yaml", folder / "sweep.sqlite"
    before = rows(db)
    assert run_sweep(path, executor=local)["executor"] is None  # nothing left to run
    assert rows(db) == before
    doc = yaml.safe_load(path.read_text())
    doc["grid"]["components.norm"].append("none")
    path.write_text(yaml.safe_dump(doc))
    result = run_sweep(path, executor=local)
    after = rows(db)
    assert result["counts"]["done"] == 6 and len(after) == 6
    assert {k: after[k] for k in before} == before  # the old results, untouched
    assert [p["label"] for p in result["points"]] == ["norm=layernorm", "norm=rmsnorm",
                                                      "norm=none"]


def test_a_diverging_run_is_recorded_as_failed_and_the_rest_go_on(tmp_path, local, capsys):
    (tmp_path / "nan_plugin.py").write_text(NAN_PLUGIN)
    path = write_sweep(tmp_path, spec={**TINY, "plugins": ["nan_plugin.py"]}, seeds=[1],
                       grid={"components.activation": ["gelu_tanh",
                                                       {"name": "nan_after", "at": 3}]})
    result = run_sweep(path, executor=local)
    assert result["counts"] == {"pending": 0, "running": 0, "done": 1, "failed": 1}
    failure, = result["points"][1]["failures"]
    assert failure["kind"] == "diverged"
    assert failure["reason"].startswith("train: diverged at step 3 of 20 (192 tokens): the loss "
                                        "is nan, first non-finite output at trf_blocks.0.ff")
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", str(path), "--report"])
    assert exit_.value.code == 1
    out, err = capsys.readouterr()
    assert "failed runs:\n  activation={name: nan_after, at: 3} seed 1: diverged: train: " in out
    assert err.endswith("error: 1 run failed (reasons in the report); --retry-failed runs them "
                        "again\n")


def test_a_worker_keeps_the_costs_of_points_that_differ_only_in_their_layers_apart(write_spec):
    from explorer.measure.costs import run_costs
    from explorer.sweep.worker import _point_costs

    two = {**TINY, "model": {**TINY["model"], "n_layers": 2}}
    glu = {**two, "layers": [{"first": 1, "components": {"ffn": {"name": "glu", "hidden": 64}}}]}
    config = TrainConfig.from_dict({"batch_size": 4, "seq_len": 16})
    for doc in (two, glu):  # the second point is not given the first's costs from the cache
        spec = explorer.load_spec(write_spec(doc))
        assert _point_costs(spec, config) == run_costs(spec, config)


# -- Ray: one local Ray for the module, started by the executor itself -----------------------

@pytest.fixture(scope="module")
def ray_executor():
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed: pip install -e '.[ray]' (the CI installs it)")
    from explorer.sweep.ray_executor import RayExecutor

    executor = RayExecutor(workers=2, threads=1)
    yield executor
    executor.close()


class ProcessNotingTracker:
    """A run tracker that notes the process each run is handed to it in."""

    def __init__(self):
        self.seen = []

    @explorer.hookimpl
    def explorer_trackers(self):
        return [explorer.Tracker("pids", open=lambda ctx: self)]

    def start_run(self, name, group, config, tags):
        self.seen.append((name, os.getpid()))
        return self

    def log_curve(self, curve):
        pass

    def log_metrics(self, metrics, step):
        pass

    def finish(self, status, failure):
        pass


@pytest.mark.slow  # a Ray start and a sweep on it: .ci/run runs it after README's command
def test_ray_gives_the_numbers_of_the_local_executor(finished, ray_executor, tmp_path):
    path, local_result = finished
    db = tmp_path / "ray.sqlite"
    manager, tracker = explorer.get_plugin_manager(), ProcessNotingTracker()
    manager.register(tracker, "pids")
    result = run_sweep(path, executor=ray_executor, db=db, track="pids", plugins=manager)
    # Trackers are fed by the driver, never inside a Ray worker.
    assert sorted(tracker.seen) == sorted((f"{label} seed={seed}", os.getpid())
                                          for label in ("norm=layernorm", "norm=rmsnorm")
                                          for seed in (1, 2))
    assert result["executor"].startswith("ray: 2 runs at once on a local Ray on 127.0.0.1")
    assert ray_executor.nodes == ["127.0.0.1"]  # the addresses of its live nodes
    assert result["counts"]["done"] == 4
    keys = [r.key for r in make_plan(load_sweep(path)).runs]
    on_ray, here = Store(db, readonly=True), Store(path.with_suffix(".sqlite"), readonly=True)
    ray_rows, local_rows = on_ray.rows(keys), here.rows(keys)
    on_ray.close()
    here.close()
    for key in keys:  # same threads per run: identical losses, curves included
        assert ray_rows[key]["curve"] == local_rows[key]["curve"]
        assert ray_rows[key]["result"]["batch_losses"] == local_rows[key]["result"]["batch_losses"]
        assert ray_rows[key]["worker"] != local_rows[key]["worker"]


# -- kills: real processes, real signals -----------------------------------------------------

DRIVER = ("from explorer.cli import main; "
          "main(['sweep', {path!r}, '--workers', '2', '--format', 'json'])")


def _start(path, log):
    return subprocess.Popen([sys.executable, "-c", DRIVER.format(path=str(path))],
                            stdout=log, stderr=subprocess.PIPE, text=True)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def _running(db):
    return {k: r for k, r in rows(db).items() if r[0] == "running"}


@pytest.mark.slow  # 16 s of real kills; run by .ci/run after the default suite
def test_kills_lose_only_the_runs_in_flight_and_a_restart_finishes_once(tmp_path):
    path = write_sweep(tmp_path, seeds=[1, 2, 3, 4], steps=150, train={"eval_every": 150})
    db = tmp_path / "sweep.sqlite"
    log = open(tmp_path / "out.json", "w")

    # 1. a worker is killed: only its run fails; then Ctrl-C puts the runs in flight back
    first = _start(path, log)
    victim, (*_, pid) = next(iter(wait_for(lambda: _running(db), what="a run").items()))
    os.kill(int(pid), signal.SIGKILL)
    wait_for(lambda: rows(db)[victim][:2] == ("failed", "killed"), what="the killed run")
    wait_for(lambda: _running(db) and any(r[0] == "done" for r in rows(db).values()),
             what="a run done and one in flight")
    first.send_signal(signal.SIGINT)  # Ctrl-C: "Interrupted.", exit code 130
    assert first.wait(60) == 130 and first.stderr.read().strip().endswith("Interrupted.")
    after_interrupt = rows(db)
    assert not _running(db)
    done = {k: r for k, r in after_interrupt.items() if r[0] == "done"}

    # 2. SIGKILL: the driver cannot clean up; its runs stay "running", its workers die with it
    second = _start(path, log)
    wait_for(lambda: len([r for r in rows(db).values() if r[0] == "done"]) > len(done)
             and _running(db), what="another run done")
    stale = _running(db)
    second.kill()
    second.wait(60)
    for *_, pid in stale.values():
        wait_for(lambda: not _alive(int(pid)), timeout=30, what=f"worker {pid} to die")
    assert set(_running(db)) >= set(stale)
    done = {k: r for k, r in rows(db).items() if r[0] == "done"}

    # 3. the next start resumes: stale runs and the killed one run again, nothing twice
    third = _start(path, log)
    assert third.wait(300) == 0, third.stderr.read()
    final = rows(db)
    assert len(final) == 8 and {r[0] for r in final.values()} == {"done"}
    assert {k: final[k] for k in done} == done  # finished before: not run again
    assert final[victim][2] >= 2  # the killed run was retried
    log.close()


def test_the_cli_reports_status_dry_run_plots_and_files(finished, capsys, tmp_path):
    path = str(finished[0])
    main_ok = _cli(capsys)
    out = main_ok(["sweep", path, "--status"])
    assert out.splitlines()[1:3] == ["4 runs: 4 done, 0 failed, 0 running, 0 pending",
                                     "driver: none running"]
    out = main_ok(["sweep", path, "--dry-run", "--workers", "2"])
    assert "4 runs, 0 to do; nothing is trained or stored by --dry-run" in out
    assert "local: 2 workers x 1 thread = 2 of " in out
    point = next(line for line in out.splitlines() if line.startswith("norm=rmsnorm"))
    assert point.split()[1:6] == ["20", "1,280", "11,920", "4.61e+04", "5.9e+07"]
    report_file = tmp_path / "report.md"
    main_ok(["sweep", path, "--report", "--format", "markdown", "--plots", str(tmp_path / "png"),
             "--out", str(report_file)])
    assert report_file.read_text().startswith("**sweep sweep** (")
    for name in ("curves.png", "cost.png"):
        assert (tmp_path / "png" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", path, "--status", "--dry-run"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "Error: --dry-run and --status: choose one\n"


def _cli(capsys):
    def run(argv):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        out, err = capsys.readouterr()
        assert exit_.value.code == 0, err
        return out

    return run
