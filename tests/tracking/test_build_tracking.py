"""``explorer build --only train --track``: the train analysis's run, recorded as a sweep's
runs are, read back with MLflow's client and TensorBoard's EventAccumulator."""

import json

import pytest

from tests.helpers import ROOT, run_cli
from tests.helpers.sweep_helpers import NAN_PLUGIN
from tests.helpers.tracking_helpers import docs_jsonl_tracker, mlflow_runs, tensorboard_run

pytest.importorskip("mlflow", reason="the mlflow extra (in the test extra) is not installed")
pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")


def test_build_records_its_training_run_in_the_current_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, out, err = run_cli(capsys, "build", ROOT / "specs" / "tiny.yaml", "--only", "train",
                             "--set", "model.n_layers=1", "--set", "analyses.train.steps=4",
                             "--set", "analyses.train.eval_every=2", "--set",
                             "analyses.train.eval_tokens=256", "--track", "mlflow",
                             "--track", "tensorboard", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    result = report["analyses"]["train"]
    assert [p["step"] for p in result["curve"]] == [0, 2, 4]
    assert report["tracking"] == {"trackers": ["mlflow", "tensorboard"], "warnings": []}
    runs = mlflow_runs((tmp_path / "mlruns").as_uri(), "tiny")
    (run, history), = runs.values()
    assert run.info.run_name == "tiny seed=123" and run.info.status == "FINISHED"
    assert (run.data.tags["group"], run.data.tags["seed"]) == ("tiny", "123")
    assert run.data.params["model.n_layers"] == "1" and run.data.params["train.steps"] == "4"
    assert history["train_loss"] == [(p["step"], p["train_loss"]) for p in result["curve"]]
    assert history["final_val_loss"] == [(4, result["final_val_loss"])]
    scalars, texts = tensorboard_run(tmp_path / "tensorboard" / "tiny" / "tiny" / "seed=123")
    assert [v for _, v in scalars["loss/val"]] == pytest.approx(
        [p["val_loss"] for p in result["curve"]], rel=1e-6)
    assert texts["status"] == "done"


def test_a_training_run_that_diverges_is_recorded_as_failed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nan_plugin.py").write_text(NAN_PLUGIN)
    tracker = docs_jsonl_tracker(tmp_path)
    code, out, err = run_cli(capsys, "build", ROOT / "specs" / "tiny.yaml", "--only", "train",
                             "-p", tmp_path / "nan_plugin.py", "-p", tracker,
                             "--set", "components.activation=nan_after",
                             "--set", "model.n_layers=1", "--set", "analyses.train.steps=4",
                             "--set", "analyses.train.eval_tokens=256", "--track", "jsonl",
                             "--format", "json")
    assert code == 1  # the analysis failed: the report says so, and so does the tracker
    failure = json.loads(out)["failures"]["train"]
    assert failure.startswith("train: diverged at step 3 of 4")
    line, = (json.loads(text) for text in (tmp_path / "tiny.jsonl").read_text().splitlines())
    assert (line["name"], line["group"], line["status"]) == ("tiny seed=123", "tiny", "failed")
    assert line["failure"] == f"error: {failure}" and "curve" not in line
