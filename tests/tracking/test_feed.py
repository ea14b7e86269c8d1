"""What the trackers are handed: a killed run's record, and a record that cannot be built
costing a warning line, never the sweep."""

from explorer.tracking import Trackers, sweep_record

TASK = {"key": "abc123", "label": "norm=rmsnorm", "seed": 2,
        "spec": {"name": "micro", "tokenizer": "bytes", "model": {"emb_dim": 16},
                 "components": {"norm": {"name": "rmsnorm", "eps": 1e-05}},
                 "layers": [{"every": 2, "components": {"norm": "layernorm"}}]},
        "train": {"lr": 0.003, "steps": 20}}


def test_a_killed_run_is_handed_over_as_failed_with_its_reason():
    outcome = {"key": "abc123", "state": "failed", "failure": "killed",
               "reason": "its worker process (pid 7) died (killed by SIGKILL) during the run"}
    record = sweep_record("norms", TASK, {"components.norm": "rmsnorm"}, outcome)
    assert record == {
        "name": "norm=rmsnorm seed=2", "group": "norm=rmsnorm",
        "config": {"grid.components.norm": "rmsnorm", "seed": 2, "tokenizer": "bytes",
                   "model.emb_dim": 16, "components.norm.name": "rmsnorm",
                   "components.norm.eps": 1e-05,
                   "layers": '[{"every": 2, "components": {"norm": "layernorm"}}]',
                   "train.lr": 0.003, "train.steps": 20},
        "tags": {"sweep": "norms", "point": "norm=rmsnorm", "seed": "2", "run_key": "abc123"},
        "curve": [], "metrics": {}, "step": None, "status": "failed",
        "failure": "killed: its worker process (pid 7) died (killed by SIGKILL) during the run"}


class Recording:
    def __init__(self):
        self.names = []

    def start_run(self, name, group, config, tags):
        self.names.append(name)
        raise AssertionError("not reached in this test")


def test_a_record_that_cannot_be_built_is_a_warning_line():
    warned, session = [], Recording()
    trackers = Trackers([("mlflow", session)], warned.append)

    def broken():
        return {}["curve"]

    trackers.record(broken, "run abc123")
    assert warned == ["tracker mlflow failed for run abc123: KeyError: 'curve'; the run is in "
                      "the store"]
    assert session.names == [] and trackers.warnings == warned


def test_the_mlflow_uri_defaults_to_the_environment_then_a_file_store_beside_the_store(
        tmp_path, monkeypatch):
    from explorer.plugins.trackers.mlflow import tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri("", tmp_path) == (tmp_path / "mlruns").as_uri()
    assert tracking_uri("runs/here", tmp_path) == (tmp_path / "runs" / "here").as_uri()
    assert tracking_uri("sqlite:///mlflow.db", tmp_path) == "sqlite:///mlflow.db"
    assert tracking_uri("file:///srv/mlruns", tmp_path) == "file:///srv/mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri("", tmp_path) == "http://127.0.0.1:5000"
