"""The sweep store's states and transactions, the driver lock, and reports (text, markdown,
JSON) and status from a store mid-sweep. No training: outcomes are written by hand."""

import json
import math
import sqlite3

import pytest

import explorer
from explorer.sweep import load_sweep, make_plan, report, status
from explorer.sweep.results import build_report, to_markdown, to_text
from explorer.sweep.store import Store
from tests.helpers.sweep_helpers import outcome, write_sweep


@pytest.fixture
def sweep(tmp_path):
    path = write_sweep(tmp_path)  # norm: layernorm (baseline), rmsnorm; seeds 1, 2
    plan = make_plan(load_sweep(path))
    return path, plan, {(r.point.label, r.seed): r.key for r in plan.runs}


def test_states_change_one_transaction_at_a_time_and_results_count_once(sweep, tmp_path):
    path, plan, key = sweep
    db = tmp_path / "s.sqlite"
    store = Store(db)
    keys = [r.key for r in plan.runs]
    with store.driver_lock():
        assert store.add(plan, 1) == 4 and store.add(plan, 1) == 0
        assert store.counts(keys) == {"pending": 4, "running": 0, "done": 0, "failed": 0}
        a, b, c, d = (key[("norm=layernorm", 1)], key[("norm=rmsnorm", 1)],
                      key[("norm=layernorm", 2)], key[("norm=rmsnorm", 2)])
        store.start(a, "4242", "here")
        assert store.finish(outcome(a, 2.0))
        with pytest.raises(explorer.ExplorerError, match="is not pending"):
            store.start(a)  # a done run is never started again
        row = store.rows([a])[a]
        assert (row["state"], row["attempts"], row["worker"]) == ("done", 1, "4242")
        assert row["metrics"]["final_val_loss"] == 2.0 and len(row["curve"]) == 2
        assert "curve" not in row["result"]  # stored once, in its own column

        # a result from another driver (a stale worker) is never written over this one's runs
        store.start(b)
        other = Store(db)
        other.driver = "elsewhere:1"
        assert not other.finish(outcome(b, 9.9))
        assert not other.finish(outcome(a, 9.9))
        other.close()
        assert store.finish(outcome(b, 0.0, "failed", "killed", "its worker died"))
        store.start(c)
        assert store.finish(outcome(c, 0.0, "failed", "diverged", "train: diverged at step 3"))
        # killed runs are retried by the next start; others only with retry_failed
        assert store.todo(keys) == [b, d]
        assert store.todo(keys, retry_failed=True) == [b, c, d]
        store.start(d)
        assert store.release() == 1  # Ctrl-C: what this driver runs goes back to pending
        assert store.rows([d])[d]["reason"] == "interrupted"
        store.start(d)  # and left running: this driver is about to "die"
    assert store.rows([a])[a]["metrics"]["final_val_loss"] == 2.0
    store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = Store(db)
    with again.driver_lock():  # a new driver: what was running belongs to a dead one
        assert again.reset_stale() == 1
        assert again.counts(keys) == {"pending": 1, "running": 0, "done": 1, "failed": 2}
    again.close()


def test_a_second_driver_is_refused_while_the_first_lives(sweep, tmp_path):
    db = tmp_path / "s.sqlite"
    first, second = Store(db), Store(db)
    with first.driver_lock():
        assert second.driver_running().startswith(first.driver)
        with pytest.raises(explorer.ExplorerError, match=rf"s.sqlite: another driver "
                                                         rf"\({first.driver} since .*\) is "
                                                         rf"running this sweep; follow it with "
                                                         rf"--status or --report"):
            with second.driver_lock():
                pass
    assert second.driver_running() is None
    with second.driver_lock():  # free again once the first let go
        pass
    first.close()
    second.close()


def test_the_report_mid_sweep_marks_incomplete_points(sweep, tmp_path):
    path, plan, key = sweep
    db = tmp_path / "s.sqlite"
    store = Store(db)
    with store.driver_lock():
        store.add(plan, 1)
        for label, seed, loss in (("norm=layernorm", 1, 2.0), ("norm=layernorm", 2, 2.2),
                                  ("norm=rmsnorm", 1, 1.9)):
            store.start(key[(label, seed)])
            store.finish(outcome(key[(label, seed)], loss))
        store.start(key[("norm=rmsnorm", 2)])  # still running
        # read while the driver holds the store, from a read-only connection
        result = report(path, db=db)
        text, mid_status = report(path, db=db, fmt="text"), status(path, db=db)
    store.close()
    assert result["counts"] == {"pending": 0, "running": 1, "done": 3, "failed": 0}
    assert result["complete"] is False
    base, rms = result["points"]
    assert (base["complete"], rms["complete"]) == (True, False)
    # the baseline: mean 2.1, sd 0.1414, 95% CI 2.1 +- t(0.975, 1) * sd / sqrt(2)
    s = base["final_val_loss"]
    assert s["mean"] == pytest.approx(2.1) and s["sd"] == pytest.approx(math.sqrt(0.02))
    assert s["ci"] == pytest.approx([2.1 - 12.7062047 * 0.1, 2.1 + 12.7062047 * 0.1])
    assert base["is_baseline"] and base["delta"] is None
    # rmsnorm: one seed so far; the paired difference uses the seeds both have (seed 1)
    assert rms["final_val_loss"]["n"] == 1 and rms["delta"]["mean"] == pytest.approx(-0.1)
    assert rms["delta"]["ci"] is None and rms["delta"]["significant"] is False
    assert rms["costs"]["parameters"] == 11968 and rms["curve"]["tokens"] == [0, 1280]
    lines = text.splitlines()
    assert lines[1] == "4 runs (2 points x 2 seeds): 3 done, 0 failed, 1 running, 0 pending " \
                       "(INCOMPLETE)"
    assert lines[4].split()[:4] == ["norm", "seeds", "val", "loss"]  # config columns first
    assert lines[6].split()[:5] == ["rmsnorm", "1/2", "(incomplete)", "1.9000", "-"]
    assert mid_status["counts"]["running"] == 1 and mid_status["driver"]
    assert mid_status["running"][0]["label"] == "norm=rmsnorm"


def test_reports_in_three_formats_say_the_same(sweep, tmp_path):
    path, plan, key = sweep
    db = tmp_path / "s.sqlite"
    store = Store(db)
    losses = {("norm=layernorm", 1): 2.0, ("norm=layernorm", 2): 2.2,
              ("norm=rmsnorm", 1): 1.9, ("norm=rmsnorm", 2): 2.05}
    with store.driver_lock():
        store.add(plan, 1)
        for where, loss in losses.items():
            store.start(key[where])
            store.finish(outcome(key[where], loss))
    result = build_report(plan, store)
    store.close()
    delta = result["points"][1]["delta"]
    assert delta["mean"] == pytest.approx(-0.125)  # (-0.1 - 0.15) / 2
    assert delta["ci"] == pytest.approx([-0.125 - 12.7062047 * 0.025, -0.125 + 12.7062047 * 0.025])
    text, markdown = to_text(result), to_markdown(result)
    assert "rmsnorm      2/2    1.9750" in text and "-0.1250  [-0.4427, 0.1927]" in text
    assert "| rmsnorm | 2/2 | 1.9750 | 0.1061 | [1.0220, 2.9280] | -0.1250 | [-0.4427, 0.1927] " \
           "|  | 11,968 | 46.1k | 1000 |" in markdown
    as_json = json.loads(report(path, db=db, fmt="json"))
    assert as_json["points"][1]["delta"]["mean"] == pytest.approx(-0.125)
    assert as_json["complete"] is True and as_json["columns"] == ["components.norm"]


def test_the_progress_line_counts_runs_and_estimates_the_time_left():
    import io

    from explorer.sweep.progress import Progress

    stream = io.StringIO()
    progress = Progress("positional", enabled=True, stream=stream)
    progress.finished({"seconds": 10.0})
    progress.finished({"seconds": 14.0})
    progress.update({"done": 1, "failed": 1, "running": 2, "pending": 8}, slots=2)
    progress.close()
    # mean 12 s a run, 10 runs left, 2 at a time: 60 s
    assert stream.getvalue() == ("\rsweep positional: 2/12 finished (1 done, 1 failed), 2 "
                                 "running, 8 pending; about 1m00s left\n")
    quiet = io.StringIO()
    Progress("positional", enabled=False, stream=quiet).update(
        {"done": 1, "failed": 0, "running": 0, "pending": 0}, slots=1)
    assert quiet.getvalue() == ""
