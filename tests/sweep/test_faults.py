"""A sweep whose surroundings fail: a Ray that does not answer, fails to start or dies under the
sweep (real local Rays, real kills), and a store file that is not a store. Each is one
``Error:`` line and exit code 2, with the store as it was or consistent, and a restart resumes."""

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import run_cli
from explorer.sweep import load_sweep, make_plan
from tests.helpers.processes import descendants
from tests.helpers.sweep_helpers import rows, wait_for, write_mid_sweep, write_sweep

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed: pip install -e '.[ray]'")


def _ray_log(err):
    """The text of the log of Ray's output that an error names (removed here)."""
    path = Path(err.split("(Ray's output: ")[1].split(")")[0].split(",")[0])
    assert path.name.startswith("explorer-ray-")
    text = path.read_text()
    path.unlink()
    return text


def _stored(db):
    """The store's rows, every column, straight from the file."""
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute("SELECT * FROM runs"))


# -- a cluster that does not answer ----------------------------------------------------------

@needs_ray
def test_an_unreachable_cluster_is_one_line_after_the_timeout_and_the_store_is_untouched(
        tmp_path, capsys):
    path = write_mid_sweep(tmp_path)  # a store with runs done, one left running
    db, fresh = tmp_path / "sweep.sqlite", tmp_path / "fresh.sqlite"
    before, data = _stored(db), db.read_bytes()
    for store in (db, fresh):
        clock = time.monotonic()
        code, out, err = run_cli(capsys, "sweep", path, "--executor", "ray", "--ray-address",
                                 "127.0.0.1:1", "--ray-timeout", "1", "--db", store)
        assert time.monotonic() - clock < 20  # not the minutes Ray's own retries take
        assert (code, out) == (2, "")
        assert err == ("Error: --ray-address 127.0.0.1:1: no Ray cluster answered within 1 s "
                       "(--ray-timeout); check the address, and that its head runs (ray start "
                       "--head --port=6379)\n")
    assert _stored(db) == before and db.read_bytes() == data
    assert not fresh.exists()


@pytest.mark.parametrize("args, message", [
    (["--executor", "ray", "--ray-timeout", "0"],
     "Error: Invalid value for '--ray-timeout': 0.0 is not in the range x>0.\n"),
    (["--ray-timeout", "5"], "Error: --ray-timeout waits for Ray: give it with --executor ray\n"),
])
def test_the_ray_timeout_is_checked_before_anything_runs(tmp_path, capsys, args, message):
    code, out, err = run_cli(capsys, "sweep", write_sweep(tmp_path), *args)
    assert code == 2 and err.endswith(message)  # click's usage lines may come first
    assert [line for line in err.splitlines() if line.startswith("Error")] == [message.strip()]
    assert not (tmp_path / "sweep.sqlite").exists()


# -- a Ray that fails to start ---------------------------------------------------------------

@needs_ray
def test_a_ray_that_fails_to_start_is_one_line_and_no_store(tmp_path, capsys, monkeypatch):
    path = write_sweep(tmp_path)
    (tmp_path / "a-file").write_text("")
    # Ray's session folder under a file: Ray cannot create it (as on a full or read-only /tmp)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "a-file" / "ray"))
    code, out, err = run_cli(capsys, "sweep", path, "--executor", "ray")
    assert (code, out) == (2, "")
    assert err.startswith("Error: Ray failed to start: NotADirectoryError: [Errno 20] Not a "
                          f"directory: '{tmp_path / 'a-file' / 'ray'}")
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "sweep.sqlite").exists()


# -- a Ray that dies mid-sweep ---------------------------------------------------------------


def _sweep(path, *args):
    return subprocess.Popen([sys.executable, "-m", "explorer", "sweep", str(path),
                             "--executor", "ray", "--workers", "2", "--format", "json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # 20 s of a real Ray and a kill; .ci/run runs it with the two-node test
@needs_ray
def test_a_ray_killed_mid_sweep_is_one_line_its_runs_go_back_and_a_restart_finishes(tmp_path):
    path = write_sweep(tmp_path, seeds=[1, 2, 3], steps=30, train={"eval_every": 30})
    db = tmp_path / "sweep.sqlite"
    first = _sweep(path)
    wait_for(lambda: any(r[0] == "done" for r in rows(db).values()), timeout=180,
             what="a run done")
    raylet = [pid for pid, name in descendants(first.pid).items() if name == "raylet"]
    assert len(raylet) == 1
    os.kill(raylet[0], signal.SIGKILL)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 2, err
    assert out == ""  # no Ray output in the report's place (the JSON)
    assert len(err.splitlines()) == 1 and err.startswith("Error: Ray stopped mid-sweep: ")
    assert "the runs in flight are pending again: start the sweep again to resume" in err
    _ray_log(err)  # named, and kept for reading
    after = rows(db)
    states = [state for state, *_ in after.values()]
    assert len(after) == 6 and set(states) == {"done", "pending"}  # none left running
    done = {k: r for k, r in after.items() if r[0] == "done"}

    second = _sweep(path)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    final = rows(db)
    assert len(final) == 6 and {r[0] for r in final.values()} == {"done"}
    assert {k: final[k] for k in done} == done  # done before: not run again
    keys = [run.key for run in make_plan(load_sweep(path)).runs]
    assert sorted(final) == sorted(keys)  # each run in the store exactly once


# -- a store file that is not a store --------------------------------------------------------

@pytest.mark.parametrize("mode", [[], ["--status"], ["--report"], ["--dry-run"]])
@pytest.mark.parametrize("content, why", [
    (b"runs: 3\n", "file is not a database"),
    (None, "an SQLite database without a runs table"),
])
def test_a_file_that_is_not_a_store_is_one_line_and_left_as_it_was(tmp_path, capsys, mode,
                                                                   content, why):
    path = write_sweep(tmp_path)
    db = tmp_path / "notes.db"
    if content is None:  # another program's database
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE notes (text TEXT)")
        conn.close()
    else:
        db.write_bytes(content)
    data = db.read_bytes()
    code, out, err = run_cli(capsys, "sweep", path, "--db", db, *mode)
    assert (code, out) == (2, "")
    assert err == (f"Error: {db}: is not an explorer sweep store (SQLite): {why}; give --db the "
                   "store of a sweep, or a path that does not exist yet\n")
    assert db.read_bytes() == data


# -- before the first start ------------------------------------------------------------------

def test_status_before_the_first_start_lists_every_run_pending_and_creates_nothing(tmp_path,
                                                                                    capsys):
    path = write_sweep(tmp_path)  # 2 points x 2 seeds
    page = tmp_path / "status.html"
    code, out, err = run_cli(capsys, "sweep", path, "--status", "--html", page)
    assert code == 0, err
    db = tmp_path / "sweep.sqlite"
    assert out.splitlines() == [
        f"sweep sweep  ({path}; store {db})", "4 runs: 0 done, 0 failed, 0 running, 4 pending",
        "driver: none running", "",
        "  norm=layernorm  done 0  failed 0  running 0  pending 2",
        "  norm=rmsnorm    done 0  failed 0  running 0  pending 2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "micro.yaml",
                                                          "status.html", "sweep.yaml"]
