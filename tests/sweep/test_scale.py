"""Sweeps of many runs (issue 23, "Ten thousand runs"): the report's numbers from a store
written through its API, against sums done by hand; status, report and a resumed start read
the store in as many statements for 400 runs as for 4 (no query per run or per point); each
reads only the columns it needs. benchmarks/sweep_store.py times them at 10,000 runs."""

import math
import sqlite3

import pytest

from explorer.sweep import load_sweep, make_plan
from explorer.sweep.driver import remaining
from explorer.sweep.estimate import estimate
from explorer.sweep.results import build_report
from explorer.sweep.standing import build_status
from explorer.sweep.store import COLUMNS, Store
from tests.helpers.sweep_helpers import write_grid_sweep

T_975_2DF = 4.302652729749464  # Student's t, 97.5% quantile, 2 degrees of freedom (tables)


def test_the_report_of_a_store_written_through_the_api_gives_the_hand_computed_numbers(tmp_path):
    losses = {(0, 1): 2.0, (0, 2): 2.2, (0, 3): 2.4,  # layernorm, the baseline
              (1, 1): 1.9, (1, 2): 2.0, (1, 3): 2.4}  # rmsnorm
    path, plan = write_grid_sweep(tmp_path, rates=1, seeds=3,
                                  loss=lambda index, seed: losses[(index, seed)])
    store = Store(path.with_suffix(".sqlite"), readonly=True)
    try:
        report = build_report(plan, store)
    finally:
        store.close()
    base, rms = report["points"]
    assert [base["label"], rms["label"]] == ["norm=layernorm, lr=0.001", "norm=rmsnorm, lr=0.001"]
    assert base["is_baseline"] and base["delta"] is None
    assert base["final_val_loss"]["mean"] == pytest.approx(2.2)
    assert base["final_val_loss"]["sd"] == pytest.approx(0.2)
    half = T_975_2DF * 0.2 / math.sqrt(3)
    assert base["final_val_loss"]["ci"] == pytest.approx([2.2 - half, 2.2 + half])
    assert rms["final_val_loss"]["mean"] == pytest.approx(2.1)
    assert rms["final_val_loss"]["sd"] == pytest.approx(math.sqrt((0.04 + 0.01 + 0.09) / 2))
    # rmsnorm - layernorm, seed by seed: -0.1, -0.2, 0.0
    delta = rms["delta"]
    assert delta["mean"] == pytest.approx(-0.1) and delta["sd"] == pytest.approx(0.1)
    half = T_975_2DF * 0.1 / math.sqrt(3)
    assert delta["ci"] == pytest.approx([-0.1 - half, -0.1 + half])
    assert delta["seeds"] == [1, 2, 3] and not delta["significant"]  # the CI spans 0
    assert report["counts"] == {"pending": 0, "running": 0, "done": 6, "failed": 0}
    assert rms["costs"]["seconds_per_run"] == 1.5 and rms["costs"]["parameters"] == 11968
    assert rms["curve"]["mean"] == pytest.approx([5.5, 2.1])


def statements(db, read):
    """(what ``read(plan, store)`` returns, the SQL statements it ran on a read-only store)."""
    store = Store(db, readonly=True)
    ran = []
    store.db.set_trace_callback(ran.append)
    try:
        return read(store), ran
    finally:
        store.close()


@pytest.fixture(scope="module")
def small_and_large(tmp_path_factory):
    """The same sweep at 4 runs (2 points x 2 seeds) and 400 (20 points x 20 seeds)."""
    return [write_grid_sweep(tmp_path_factory.mktemp(f"grid{rates}"), rates, seeds)
            for rates, seeds in ((1, 2), (10, 20))]


@pytest.mark.parametrize("read", ["status", "report", "todo", "add"])
def test_reading_a_sweep_runs_as_many_statements_for_400_runs_as_for_4(small_and_large, read):
    counts = []
    for path, plan in small_and_large:
        keys = [run.key for run in plan.runs]
        action = {"status": lambda store: build_status(plan, store),
                  "report": lambda store: build_report(plan, store),
                  "todo": lambda store: store.todo(keys)}.get(read)
        if read == "add":  # a resumed start adds nothing: one read of the keys held
            store = Store(path.with_suffix(".sqlite"))
            ran = []
            store.db.set_trace_callback(ran.append)
            with store.driver_lock():
                assert store.add(plan, 1) == 0
            store.close()
        else:
            _, ran = statements(path.with_suffix(".sqlite"), action)
        counts.append(len(ran))
    assert len(small_and_large[1][1].runs) == 400
    assert counts[0] == counts[1], counts
    assert counts[1] <= 8, counts


def test_status_and_report_read_only_the_columns_they_need(small_and_large):
    path, plan = small_and_large[0]
    _, ran = statements(path.with_suffix(".sqlite"), lambda store: build_status(plan, store))
    selects = [s for s in ran if s.startswith("SELECT") and "FROM runs WHERE key IN" in s]
    assert selects and all("task" not in s and "curve" not in s and "*" not in s
                           for s in selects), selects
    _, ran = statements(path.with_suffix(".sqlite"), lambda store: build_report(plan, store))
    selects = [s for s in ran if "FROM runs WHERE key IN" in s]
    assert selects and all("task" not in s and "result" not in s and "*" not in s
                           for s in selects), selects


def test_rows_reads_the_columns_asked_for_and_names_a_wrong_one(small_and_large):
    path, plan = small_and_large[0]
    store = Store(path.with_suffix(".sqlite"), readonly=True)
    try:
        table = [row[1] for row in store.db.execute("PRAGMA table_info(runs)")]
        assert list(COLUMNS) == table
        key = plan.runs[0].key
        assert store.rows([key], ["state", "metrics"]) == {key: {
            "key": key, "state": "done", "metrics": store.rows([key])[key]["metrics"]}}
        with pytest.raises(ValueError, match=r"not columns of the runs table: \['stat'\]"):
            store.rows([key], ["stat"])
    finally:
        store.close()


def test_remaining_and_the_dry_run_count_the_runs_left_per_point(small_and_large, tmp_path):
    path, plan = small_and_large[1]
    db = tmp_path / "copy.sqlite"
    with sqlite3.connect(path.with_suffix(".sqlite")) as source, sqlite3.connect(db) as copy:
        source.backup(copy)
        copy.execute("UPDATE runs SET state = 'pending' WHERE seed = 20")  # the last seed: left
    left = remaining(plan, db)
    assert left == [run.key for run in plan.runs if run.seed == 20]
    result = estimate(plan, left)
    assert [p["runs_to_do"] for p in result["points"]] == [1] * 20
    # the 10 learning rates of a norm share one model: the same costs
    assert len({p["parameters"] for p in result["points"]}) == 2


def test_make_plan_loads_a_model_once_for_points_that_differ_only_in_train_settings(
        small_and_large):
    path, plan = small_and_large[1]
    specs = {id(point.spec) for point in plan.points}
    assert len(specs) == 2  # one per norm, shared by its 10 learning rates
    again = make_plan(load_sweep(path))
    assert [run.key for run in again.runs] == [run.key for run in plan.runs]
    assert [len(plan.runs_of(p)) for p in plan.points] == [20] * 20
    assert [run.seed for run in plan.runs_of(plan.points[3])] == list(range(1, 21))


def test_a_report_computes_each_t_quantile_once(small_and_large):
    """A 500-point report asked for the same t quantile 1,500 times (2.9 s of it at 10,000
    runs, when it was computed by bisection); it is cached."""
    from explorer.sweep import stats

    path, plan = small_and_large[1]
    stats.t_quantile.cache_clear()
    _, ran = statements(path.with_suffix(".sqlite"), lambda store: build_report(plan, store))
    assert stats.t_quantile.cache_info().misses == 1  # 20 seeds: df 19, means and deltas alike
