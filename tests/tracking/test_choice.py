"""Choosing trackers: the listing, and every bad choice refused in one line, exit 2, before
anything runs (no store is created)."""

import json
import subprocess
import sys

import pytest

from tests.helpers import run_cli
from tests.helpers.sweep_helpers import write_sweep


def test_plugins_lists_the_built_in_trackers_with_what_they_need(capsys):
    code, out, err = run_cli(capsys, "plugins", "--kind", "tracker", "--format", "json")
    assert code == 0, err
    found = {entry["name"]: entry for entry in json.loads(out)["components"]}
    assert sorted(found) == ["mlflow", "tensorboard"]
    assert found["mlflow"]["requires"] == ["mlflow"]
    assert found["mlflow"]["install"] == 'pip install "explorer[mlflow]"'
    assert [p["name"] for p in found["mlflow"]["params"]] == ["uri", "experiment"]
    assert [p["name"] for p in found["tensorboard"]["params"]] == ["log_dir"]
    assert found["tensorboard"]["plugin"] == "explorer.plugins.trackers"
    code, out, err = run_cli(capsys, "plugins", "--kind", "tracker")
    assert code == 0 and "\ntracker:\n  mlflow " in out


def test_registering_and_checking_trackers_imports_none_of_their_libraries(tmp_path):
    path = write_sweep(tmp_path, track=["mlflow", "tensorboard"])
    code = ("import sys, explorer\n"
            "from explorer.sweep import load_sweep\n"
            "from explorer.tracking import choose\n"
            f"sweep = load_sweep({str(path)!r})\n"
            "choose(sweep.track, explorer.get_plugin_manager().registry(), sweep.source)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'mlflow', 'tensorboard', 'torch'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stderr


@pytest.mark.parametrize("track, message", [
    ("mlfow", "track: unknown tracker 'mlfow'; did you mean 'mlflow'? registered: mlflow, "
              "tensorboard; explorer plugins --kind tracker lists them"),
    ({"mlflow": {"url": "x"}}, "track.mlflow.url: unknown parameter of tracker 'mlflow'; did "
                               "you mean 'uri'? parameters: uri, experiment"),
    ({"tensorboard": {"log_dir": 3}}, "track.tensorboard.log_dir: expected a string, got 3"),
    ({"mlflow": "sqlite:///x.db"}, "track.mlflow: expected a mapping of options, got "
                                   "'sqlite:///x.db'; e.g. track: {mlflow: {OPTION: VALUE}}, "
                                   "or track: mlflow for the defaults"),
    (["mlflow", "mlflow"], "track: names tracker 'mlflow' twice; each tracker once"),
    (3, "track: expected a tracker's name, a list of names, or a mapping of names to options, "
        "e.g. track: mlflow, got 3"),
])
def test_a_bad_track_in_the_sweep_file_is_one_line_naming_the_key(tmp_path, capsys, track,
                                                                    message):
    path = write_sweep(tmp_path, track=track)
    code, out, err = run_cli(capsys, "sweep", path)
    assert (code, err) == (2, f"Error: {path}: {message}\n")
    assert not path.with_suffix(".sqlite").exists()


def test_a_tracker_whose_library_is_missing_names_the_extra_before_the_sweep(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what find_spec sees of a missing module
    path = write_sweep(tmp_path)
    code, out, err = run_cli(capsys, "sweep", path, "--track", "mlflow")
    assert (code, err) == (2, "Error: --track: tracker 'mlflow' needs the Python package mlflow, "
                              "which is not installed; pip install \"explorer[mlflow]\"\n")
    assert not path.with_suffix(".sqlite").exists()
    # Only a run needs it: the dry run and the status read the choice without it.
    code, out, err = run_cli(capsys, "sweep", path, "--track", "mlflow", "--status")
    assert code == 0, err
    code, out, err = run_cli(capsys, "sweep", path, "--track", "nope", "--status")
    assert code == 2 and err.startswith("Error: --track: unknown tracker 'nope'; ")


def test_build_track_needs_the_train_analysis(capsys):
    code, out, err = run_cli(capsys, "build", "specs/tiny.yaml", "--only", "params",
                             "--track", "tensorboard")
    assert (code, err) == (2, "Error: --track records the train analysis's run: give it with "
                              "--only train (or a list holding train)\n")
