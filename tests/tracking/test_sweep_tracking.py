"""A real sweep fed to real trackers, read back with their own readers: MLflow's client on its
file store, TensorBoard's EventAccumulator on the event files, and docs/plugins.md's JSON-lines
tracker, installed as a third-party plugin is; a tracker that fails costs a warning line and
never a run."""

import contextlib
import io
import json

import pytest

from explorer import get_plugin_manager
from explorer.cli import main
from explorer.sweep import load_sweep, make_plan, run_sweep
from explorer.sweep.store import Store
from tests.helpers.sweep_helpers import NAN_PLUGIN, TINY, write_sweep
from tests.helpers.tracking_helpers import (BROKEN_TRACKER, UNREACHABLE_TRACKER,
                                            docs_jsonl_tracker, mlflow_runs,
                                            tensorboard_hparams, tensorboard_run)

pytest.importorskip("mlflow", reason="the mlflow extra (in the test extra) is not installed")
pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")


def install_trackers(site):
    """A fake installed distribution whose entry points are three trackers: the docs'
    JSON-lines one, one that fails every run, one that cannot start."""
    docs_jsonl_tracker(site)
    (site / "broken_tracker.py").write_text(BROKEN_TRACKER)
    (site / "unreachable_tracker.py").write_text(UNREACHABLE_TRACKER)
    info = site / "explorer_trackers-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: explorer-trackers\n"
                                   "Version: 0.1.0\n")
    (info / "entry_points.txt").write_text("[explorer]\njsonl = jsonl_tracker\n"
                                           "broken = broken_tracker\n"
                                           "unreachable = unreachable_tracker\n")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """gelu_tanh against an activation that turns NaN at step 3 (every run of it fails as
    diverged), 2 seeds, 20 steps, run by ``explorer sweep --track`` with mlflow, tensorboard,
    the JSON-lines tracker and one that fails every run. The file's ``track:`` names one that
    cannot start: ``--track`` replaces the file's choice, keeping the options of the trackers
    both name."""
    folder, site = tmp_path_factory.mktemp("tracked"), tmp_path_factory.mktemp("site")
    install_trackers(site)
    (folder / "nan_plugin.py").write_text(NAN_PLUGIN)
    path = write_sweep(folder, spec={**TINY, "plugins": ["nan_plugin.py"]}, seeds=[1, 2],
                       grid={"components.activation": ["gelu_tanh",
                                                       {"name": "nan_after", "at": 3}]},
                       track={"unreachable": None, "jsonl": {"file": "runs.jsonl"}})
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default: beside the store
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                pytest.raises(SystemExit) as exit_:
            main(["sweep", str(path), "--workers", "1", "--format", "json", "--track", "mlflow",
                  "--track", "tensorboard", "--track", "jsonl", "--track", "broken"])
        keys = [run.key for run in make_plan(load_sweep(path), get_plugin_manager()).runs]
    assert exit_.value.code == 1, err.getvalue()  # 2 runs failed: the sweep says so
    store = Store(path.with_suffix(".sqlite"), readonly=True)
    rows = store.rows(keys)
    store.close()
    warnings = [line for line in err.getvalue().splitlines() if line.startswith("warning: ")]
    return folder, json.loads(out.getvalue()), warnings, rows


def name_of(row):
    return f"{row['label']} seed={row['seed']}"


def test_the_sweep_lost_nothing_to_a_failing_tracker(tracked):
    folder, result, warnings, rows = tracked
    assert result["counts"] == {"pending": 0, "running": 0, "done": 2, "failed": 2}
    assert sorted(row["state"] for row in rows.values()) == ["done", "done", "failed", "failed"]
    # One line per run, the newline in the tracker's message escaped.
    lines = [f"tracker broken failed for run {name_of(row)}: ConnectionError: the server is "
             f"down\\n(for {name_of(row)}); the run is in the store" for row in rows.values()]
    assert sorted(warnings) == sorted(f"warning: {line}" for line in lines)
    assert result["tracking"]["trackers"] == ["mlflow", "tensorboard", "jsonl", "broken"]
    assert sorted(result["tracking"]["warnings"]) == sorted(lines)


def test_mlflow_holds_each_run_with_its_curve_metrics_tags_and_status(tracked):
    folder, _, _, rows = tracked
    runs = mlflow_runs((folder / "mlruns").as_uri(), "sweep")
    assert sorted(runs) == sorted(name_of(row) for row in rows.values())
    for key, row in rows.items():
        run, history = runs[name_of(row)]
        tags, params = run.data.tags, run.data.params
        assert (tags["group"], tags["point"], tags["seed"], tags["run_key"], tags["sweep"]) == (
            row["label"], row["label"], str(row["seed"]), key, "sweep")
        assert params["seed"] == str(row["seed"])
        assert params["train.lr"] == "0.003" and params["train.steps"] == "20"
        assert params["model.emb_dim"] == "16" and params["tokenizer"] == "bytes"
        if row["state"] == "done":
            assert params["grid.components.activation"] == "gelu_tanh"
            assert run.info.status == "FINISHED" and "failure" not in tags
            # The store's curve, step for step, through MLflow's metric history.
            for metric in ("train_loss", "val_loss", "tokens"):
                assert history[metric] == [(p["step"], p[metric]) for p in row["curve"]]
            assert [step for step, _ in history["train_loss"]] == [0, 10, 20]
            for metric in ("final_val_loss", "best_val_loss", "tokens_per_second",
                           "training_flops_per_token", "parameters"):
                assert history[metric] == [(20, row["metrics"][metric])]
        else:
            assert params["grid.components.activation.name"] == "nan_after"
            assert run.info.status == "FAILED"
            assert tags["failure"] == f"diverged: {row['reason']}"
            assert tags["failure"].startswith("diverged: train: diverged at step 3 of 20")
            assert "train_loss" not in history and "final_val_loss" not in history


def test_tensorboard_holds_a_folder_per_run_grouped_by_point(tracked):
    from explorer.plugins.trackers.tensorboard import folder_name

    folder, _, _, rows = tracked
    root = folder / "tensorboard" / "sweep"
    assert sorted(p.relative_to(root).as_posix() for p in root.glob("*/*")) == sorted(
        f"{folder_name(row['label'])}/seed={row['seed']}" for row in rows.values())
    for row in rows.values():
        run_folder = root / folder_name(row["label"]) / f"seed={row['seed']}"
        scalars, texts = tensorboard_run(run_folder)
        hparams, metric_tags = tensorboard_hparams(run_folder)
        assert (hparams["seed"], hparams["group"], hparams["train.lr"]) == (
            row["seed"], row["label"], 0.003)
        assert hparams["status"] == row["state"]
        # The final figures (none for a failed run) and the run's own time.
        assert metric_tags == sorted(f"final/{key}" for key in [*(row["metrics"] or {}),
                                                                "run_seconds"])
        assert f"| tag.point | {row['label']} |" in texts["config"]
        assert f"| seed | {row['seed']} |" in texts["config"]
        if row["state"] == "done":
            assert texts["status"] == "done"
            # Event files hold float32: the store's curve to float32's precision.
            for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss")):
                assert [s for s, _ in scalars[tag]] == [p["step"] for p in row["curve"]]
                assert [v for _, v in scalars[tag]] == pytest.approx(
                    [p[key] for p in row["curve"]], rel=1e-6)
            assert scalars["final/final_val_loss"] == [
                (20, pytest.approx(row["metrics"]["final_val_loss"], rel=1e-6))]
        else:
            assert texts["status"] == f"failed: diverged: {row['reason']}"
            assert "loss/train" not in scalars


def test_the_documented_json_lines_tracker_gets_every_run(tracked):
    folder, _, _, rows = tracked
    lines = [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines()]
    by_name = {line["name"]: line for line in lines}
    assert sorted(by_name) == sorted(name_of(row) for row in rows.values())
    for row in rows.values():
        line = by_name[name_of(row)]
        assert line["group"] == row["label"] and line["tags"]["seed"] == str(row["seed"])
        if row["state"] == "done":
            assert line["status"] == "done" and line["failure"] is None
            assert line["curve"] == row["curve"]
            assert line["metrics"]["final_val_loss"] == row["metrics"]["final_val_loss"]
        else:
            assert line["status"] == "failed" and "curve" not in line
            assert line["failure"] == f"diverged: {row['reason']}"


def test_a_tracker_that_cannot_start_stops_the_sweep_before_any_run(tmp_path):
    from explorer import ExplorerError

    (tmp_path / "unreachable.py").write_text(UNREACHABLE_TRACKER)
    path = write_sweep(tmp_path)
    manager = get_plugin_manager(plugins=[str(tmp_path / "unreachable.py")])
    with pytest.raises(ExplorerError, match=r"^tracker unreachable could not start: "
                                            r"ConnectionRefusedError: no server at :1$"):
        run_sweep(path, track="unreachable", plugins=manager)
    assert not path.with_suffix(".sqlite").exists()
