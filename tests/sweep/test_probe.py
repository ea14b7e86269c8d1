"""``explorer probe``: a tiny suite (2 tasks x 2 levels x 2 learning rates, 2 seeds, 8 steps) on
two specs, end to end: the profile against the store's rows reduced by hand, the stars, the
JSON, the chart and the page; resume after an interruption; bad input as one line."""

import contextlib
import importlib.util
import io
import json
import math
import sqlite3
import subprocess
import sys

import pytest
import yaml
from scipy.stats import t as student_t

from explorer.cli import main
from explorer.sweep.executors import LocalExecutor
from explorer.sweep.probe import load_suite, make_probe, run_probe
from explorer.sweep.probe_report import best_setting, build_profile, table, to_text
from tests.helpers import run_cli
from tests.helpers.html_page import parse, table_rows
from tests.helpers.sweep_helpers import TINY

SUITE = {"name": "mini", "seeds": 2, "lr": [1.0e-3, 1.0e-2], "weight_decay": [0.0],
         "train": {"batch_size": 4, "eval_every": 8, "eval_tokens": 64},
         "budget": {"steps": 8},
         "tasks": {"recall": {"n_keys": 4, "n_values": 4, "n_pairs": [1, 2]},
                   "induction": {"n_symbols": 8, "prefix_len": [2, 4]}}}
# The second spec mixes nothing between positions (a 1-token window): recall fails on it.
WINDOWED = {**TINY, "name": "windowed", "components": {"attention": {"name": "mha", "window": 1}}}
RUNS = 2 * 2 * 2 * 2 * 2  # specs x tasks x levels x lrs x seeds
STOP_AFTER = 6  # outcomes before the first start is interrupted


class InterruptedExecutor(LocalExecutor):
    """Local workers whose driver is interrupted (as by Ctrl-C) once STOP_AFTER runs are done."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.finished = 0

    def wait(self, timeout):
        if self.finished >= STOP_AFTER:
            raise KeyboardInterrupt
        outcomes = super().wait(timeout)
        self.finished += len(outcomes)
        return outcomes


def write_files(folder, suite=None, **changes):
    (folder / "micro.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    (folder / "windowed.yaml").write_text(yaml.safe_dump(WINDOWED, sort_keys=False))
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump({**(suite or SUITE), **changes}, sort_keys=False))
    return path


def store_rows(db):
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.row_factory = sqlite3.Row
        return [dict(row) for row in con.execute("SELECT * FROM runs")]


def cli(*args):
    """``explorer ARGS`` in this process, outside a test's capsys: (code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    return info.value.code, out.getvalue()


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """The probe interrupted after STOP_AFTER runs, then finished by ``explorer probe``."""
    folder = tmp_path_factory.mktemp("probe")
    suite = write_files(folder)
    specs = [folder / "micro.yaml", folder / "windowed.yaml"]
    db = folder / "probe.sqlite"
    executor = InterruptedExecutor(workers=2, threads=1)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_probe(make_probe(suite, specs), executor=executor, db=db)
    finally:
        executor.close()
    before = {r["key"]: r for r in store_rows(db)}
    code, out = cli("probe", *specs, "--suite", suite, "--store", db, "--format", "json",
                    "--workers", "2", "--plots", folder / "plots", "--html", folder / "page.html")
    assert code in (0, None), out
    return {"folder": folder, "db": db, "before": before, "profile": json.loads(out),
            "rows": store_rows(db), "suite": suite, "specs": specs}


def by_hand(rows):
    """The profile from the store's rows, without the report's code: per (spec, task, level)
    the lr with the highest mean accuracy over seeds (the first on a tie), its seeds' mean and
    t interval, and the paired difference against micro's best seeds."""
    settings = {}
    for row in rows:
        task = json.loads(row["task"])
        point = json.loads(row["point"])
        spec = point["base"].rsplit("/", 1)[-1].removesuffix(".yaml")
        knob = next(k for k in point if k.startswith("task."))
        group = settings.setdefault((spec, task["train"]["task"]["name"], point[knob]), {})
        group.setdefault(point["train.lr"], {})[row["seed"]] = \
            json.loads(row["metrics"])["final_accuracy"]
    best = {}
    for group, by_lr in settings.items():
        means = {lr: sum(s.values()) / len(s) for lr, s in by_lr.items()}
        top = max(means.values())
        lr = min(lr for lr in means if means[lr] == top)  # SUITE's lrs rise: first = lowest
        best[group] = (lr, by_lr[lr])
    return best


def interval(values):
    n = len(values)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = student_t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, [mean - half, mean + half]


def test_the_profile_is_the_stores_rows_reduced_by_hand(probed):
    profile, rows = probed["profile"], probed["rows"]
    assert len(rows) == RUNS and all(r["state"] == "done" for r in rows)
    best = by_hand(rows)
    assert len(profile["cells"]) == 2 * 2 * 2
    for cell in profile["cells"]:
        lr, scores = best[(cell["spec"], cell["task"], cell["level"])]
        assert cell["best"] == {"lr": lr, "weight_decay": 0.0}
        assert cell["seed_scores"] == {str(s): v for s, v in sorted(scores.items())}
        mean, ci = interval([scores[1], scores[2]])
        assert cell["score"]["mean"] == pytest.approx(mean, abs=1e-12)
        assert cell["score"]["ci"] == pytest.approx(ci, abs=1e-9) if cell["score"]["sd"] \
            else cell["score"]["ci"] is None or cell["score"]["ci"] == [mean, mean]
        if cell["spec"] == "micro":
            assert cell["delta"] is None
            continue
        _, reference = best[("micro", cell["task"], cell["level"])]
        differences = [scores[s] - reference[s] for s in (1, 2)]
        assert cell["delta"]["mean"] == pytest.approx(sum(differences) / 2, abs=1e-12)
        assert cell["delta"]["seeds"] == [1, 2]


def test_a_difference_is_starred_exactly_when_its_interval_excludes_zero(probed):
    profile = probed["profile"]
    header, rows = table(profile)
    assert header == ["task", "level", "micro", "windowed", "Δ vs micro"]
    deltas = [c["delta"] for c in profile["cells"] if c["spec"] == "windowed"]
    for delta, row in zip(deltas, rows):
        ci = delta["ci"]
        excludes = bool(ci) and (ci[0] > 0 or ci[1] < 0)
        assert delta["significant"] is excludes
        assert row[-1].endswith(" *") is excludes


def test_the_best_setting_is_the_highest_mean_among_those_with_most_seeds():
    settings = [{"lr": 1, "scores": {1: 0.5, 2: 0.7}}, {"lr": 2, "scores": {1: 0.9}},
                {"lr": 3, "scores": {1: 0.2, 2: 0.8}}, {"lr": 4, "scores": {1: 0.6, 2: 0.6}}]
    # lr 2 has the highest mean but one seed; 1 and 3 tie at 0.6 (exactly, as 4): the first wins
    assert best_setting(settings)["lr"] == 1
    assert best_setting([{"lr": 1, "scores": {}}]) is None


def test_the_json_holds_the_profile_and_its_settings(probed):
    profile = probed["profile"]
    assert profile["suite"] == "mini" and profile["specs"] == ["micro", "windowed"]
    assert profile["reference"] == "micro" and profile["seeds"] == [1, 2]
    assert profile["lr"] == [1.0e-3, 1.0e-2] and profile["weight_decay"] == [0.0]
    assert profile["tasks"] == [
        {"task": "recall", "knob": "n_pairs", "levels": [1, 2],
         "settings": {"n_keys": 4, "n_values": 4}},
        {"task": "induction", "knob": "prefix_len", "levels": [2, 4],
         "settings": {"n_symbols": 8}}]
    assert profile["counts"] == {"done": RUNS, "failed": 0, "running": 0, "pending": 0}
    assert profile["complete"] is True and profile["metric"] == "final_accuracy"
    cell = profile["cells"][0]
    assert set(cell) == {"task", "knob", "level", "spec", "best", "score", "seed_scores",
                         "delta", "settings", "complete"}
    assert [(s["lr"], s["seeds_done"]) for s in cell["settings"]] == [(1.0e-3, 2), (1.0e-2, 2)]


def test_the_chart_and_the_page(probed):
    png = probed["folder"] / "plots" / "profile.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = parse((probed["folder"] / "page.html").read_text())
    profile_table = page.find("table", id="profile")
    rows = table_rows(profile_table)
    assert len(rows) == 4  # tasks x levels
    micro = [c for c in probed["profile"]["cells"] if c["spec"] == "micro"]
    windowed = [c for c in probed["profile"]["cells"] if c["spec"] == "windowed"]
    for (tr, cells), m, w in zip(rows, micro, windowed):
        assert cells[0].text() == m["task"]
        assert cells[2].value() == m["score"]["mean"]
        assert cells[3].value() == w["score"]["mean"]
        assert cells[4].value() == w["delta"]["mean"]
        assert ("significant" in tr.classes) is w["delta"]["significant"]
    assert page.find("section", id="charts").find("svg")


def test_a_resumed_probe_keeps_what_it_had_finished(probed):
    before, after = probed["before"], {r["key"]: r for r in probed["rows"]}
    done = {k: r for k, r in before.items() if r["state"] == "done"}
    assert len(done) >= STOP_AFTER
    for key, row in done.items():  # not run again: the same result, attempt and time
        assert (after[key]["attempts"], after[key]["finished"], after[key]["metrics"]) == \
            (row["attempts"], row["finished"], row["metrics"])
    assert all(r["attempts"] == 1 for k, r in after.items() if k not in before)


def test_dry_run_predicts_only_what_is_left(probed, capsys):
    code, out, err = run_cli(capsys, "probe", *probed["specs"], "--suite", probed["suite"],
                             "--store", probed["db"], "--dry-run", "--format", "json")
    assert code in (0, None), err
    result = json.loads(out)
    assert result["runs"] == RUNS and result["runs_to_do"] == 0
    assert result["estimated_seconds"] == 0


def test_the_shipped_suite_plans_three_tasks_at_three_levels_without_training():
    suite = load_suite("mad")
    assert [(t.name, t.knob, len(t.levels)) for t in suite.tasks] == [
        ("recall", "n_pairs", 3), ("selective_copy", "n_tokens", 3), ("induction",
                                                                      "prefix_len", 3)]
    probe = make_probe(suite, ["tiny"], overrides=["model.n_layers=2"])
    assert len(probe.plan.runs) == 3 * 3 * 2 * 2 * 3
    assert probe.plan.points[0].spec.model.n_layers == 2
    # More seeds keep the runs of the seeds before: a store's results still count
    more = make_probe(suite, ["tiny"], seeds=4, overrides=["model.n_layers=2"])
    assert {r.key for r in probe.plan.runs} < {r.key for r in more.plan.runs}


@pytest.mark.parametrize("changes, args, message", [
    ({"tasks": {"recall": {"n_pairs": [1, 2], "n_keys": [4, 8]}}}, (),
     "suite.yaml: tasks.recall: gives 2 settings as lists: n_pairs, n_keys"),
    ({"tasks": {"recall": {"n_pairs": 2}}}, (), "suite.yaml: tasks.recall: gives 0 settings"),
    ({"tasks": {"recall": {"n_pairs": [2]}}}, (), "tasks.recall.n_pairs: expected two or more"),
    ({"lrs": [1.0e-3]}, (), "suite.yaml: lrs: unknown key"),
    ({"lr": [-1]}, (), "suite.yaml: lr: expected a list of distinct numbers >= 0"),
    ({"tasks": {"recall": {"n_pairs": [1, 64]}}}, (),
     "suite.yaml: tasks.recall.n_pairs: at point n_pairs=64"),
    ({"tasks": {"recall": {"n_pairz": [1, 2]}}}, (),
     "suite.yaml: tasks.recall.n_pairz: at point n_pairz=1, lr=0.001, weight_decay=0.0: "
     "unknown parameter of task 'recall'; did you mean 'n_pairs'?"),
    ({"tasks": {"nope": {"n_pairs": [1, 2]}}}, (), "suite.yaml: tasks.nope: at point n_pairs=1"),
    ({}, ("--set", "model.n_layerz=2"), "Error: --set model.n_layerz: 2: unknown key"),
    ({}, ("--plots", "x", "--dry-run"), "--plots draws the profile: not with --dry-run"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, changes, args, message):
    suite = write_files(tmp_path, **changes)
    code, out, err = run_cli(capsys, "probe", tmp_path / "micro.yaml", "--suite", suite,
                             "--store", tmp_path / "s.sqlite", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize("specs, message", [
    ((), "SPEC: missing"),
    (("missing.yaml",), "missing.yaml: no such file"),
    (("micro.yaml", "micro.yaml"), "micro.yaml: the same spec file is given twice"),
    (("micro.yaml", "./micro.yaml"), "micro.yaml: the same spec file is given twice"),
])
def test_bad_specs_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, specs, message):
    write_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "probe", *specs, "--suite", "suite.yaml")
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_a_seed_count_below_one_is_refused_by_click(tmp_path, capsys):
    suite = write_files(tmp_path)
    code, out, err = run_cli(capsys, "probe", tmp_path / "micro.yaml", "--suite", suite,
                             "--seeds", "0")
    assert code == 2 and "Error: Invalid value for '--seeds'" in err.strip().splitlines()[-1]


@pytest.mark.slow  # a Ray start; .ci/run runs it (a probe is a sweep: tests/sweep/test_run.py's Ray test)
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_on_ray_the_profile_is_the_local_ones(tmp_path):
    """``--executor ray`` (a real local Ray, started by the probe) gives the runs a local
    executor gives: the same scores, seed by seed."""
    suite = write_files(tmp_path, seeds=1, tasks={"recall": SUITE["tasks"]["recall"]},
                        lr=[1.0e-2])
    spec = tmp_path / "micro.yaml"
    done = subprocess.run([sys.executable, "-m", "explorer", "probe", spec, "--suite", suite,
                           "--executor", "ray", "--workers", "2", "--format", "json",
                           "--store", tmp_path / "ray.sqlite"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    on_ray = json.loads(done.stdout)
    executor = LocalExecutor(workers=2, threads=1)
    try:
        here = run_probe(make_probe(suite, [spec]), executor=executor, db=tmp_path / "l.sqlite")
    finally:
        executor.close()
    assert on_ray["counts"]["done"] == 2
    assert [c["seed_scores"] for c in on_ray["cells"]] == [c["seed_scores"] for c in here["cells"]]


class RowsStore:
    """What the profile reads of a store: rows of done runs with the scores given by hand."""

    def __init__(self, rows):
        self.rows_by_key, self.path = rows, "hand.sqlite"

    def rows(self, keys, columns=None):
        return {k: self.rows_by_key[k] for k in keys if k in self.rows_by_key}


def test_a_profile_by_hand_stars_a_consistent_difference_and_not_a_mixed_one(tmp_path):
    suite = write_files(tmp_path, tasks={"recall": SUITE["tasks"]["recall"]})
    probe = make_probe(suite, [tmp_path / "micro.yaml", tmp_path / "windowed.yaml"])
    # (spec, n_pairs, lr) -> score per seed: micro's lr 0.01 wins at both levels (mean 0.85
    # and 0.6 over 0.5), windowed's lr 0.001 (0.475 over 0.3; 0.6 over 0.2)
    scores = {("micro", 1, 1.0e-3): (0.5, 0.5), ("micro", 1, 1.0e-2): (0.9, 0.8),
              ("windowed", 1, 1.0e-3): (0.5, 0.45), ("windowed", 1, 1.0e-2): (0.3, 0.3),
              ("micro", 2, 1.0e-3): (0.5, 0.5), ("micro", 2, 1.0e-2): (0.5, 0.7),
              ("windowed", 2, 1.0e-3): (0.6, 0.6), ("windowed", 2, 1.0e-2): (0.2, 0.2)}
    rows = {}
    for run in probe.plan.runs:
        where = probe.where[run.point.index]
        score = scores[(where["spec"], where["level"], where["lr"])][run.seed - 1]
        rows[run.key] = {"state": "done", "seed": run.seed, "metrics": {"final_accuracy": score}}
    profile = build_profile(probe, RowsStore(rows))
    cells = {(c["spec"], c["level"]): c for c in profile["cells"]}
    assert cells[("micro", 1)]["best"]["lr"] == 1.0e-2
    assert cells[("windowed", 1)]["best"]["lr"] == 1.0e-3
    # Level 1: differences -0.4 and -0.35: mean -0.375, sd 0.025 * sqrt(2), t(0.975, 1) 12.706
    delta = cells[("windowed", 1)]["delta"]
    half = student_t.ppf(0.975, 1) * math.sqrt(0.00125) / math.sqrt(2)
    assert delta["mean"] == pytest.approx(-0.375)
    assert delta["ci"] == pytest.approx([-0.375 - half, -0.375 + half])
    assert delta["ci"][1] < 0 and delta["significant"] is True
    # Level 2: differences +0.1 and -0.1: mean 0, the interval straddles 0
    mixed = cells[("windowed", 2)]["delta"]
    assert mixed["mean"] == pytest.approx(0.0, abs=1e-12) and mixed["significant"] is False
    lines = to_text(profile).splitlines()
    assert lines[-2].endswith(" *") and not lines[-1].endswith("*")
    # micro at level 1: 0.9 and 0.8, mean 0.85, half-width 12.706 * 0.0707 / 1.414 = 0.635
    assert lines[-2].split()[:4] == ["recall", "n_pairs=1", "0.850", "[0.215,"]
