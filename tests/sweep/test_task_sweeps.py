"""A sweep whose runs learn a task: ``task:`` in the sweep file, its settings on the grid
(``task.n_pairs``), accuracy as the headline metric, and runs equal to the core loop's."""

import pytest
import yaml

import explorer
from explorer import SpecError
from explorer.sweep import load_sweep, make_plan, run_sweep
from explorer.sweep.executors import LocalExecutor
from explorer.sweep.results import to_text
from explorer.sweep.store import Store
from explorer.training.settings import TrainConfig
from tests.helpers import ROOT
from tests.helpers.sweep_helpers import TINY

TASK = {"name": "recall", "n_keys": 4, "n_values": 4}
TRAIN = {"batch_size": 4, "lr": 3.0e-3, "eval_every": 10, "eval_tokens": 64}


def write(folder, **changes):
    (folder / "micro.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    doc = {"base": "micro.yaml", "grid": {"task.n_pairs": [1, 2]}, "seeds": [1, 2],
           "task": TASK, "train": TRAIN, "budget": {"steps": 10}, **changes}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_task_sweep_reports_accuracy_and_its_runs_are_the_core_loops(tmp_path):
    path = write(tmp_path)
    executor = LocalExecutor(workers=2, threads=1)
    try:
        report = run_sweep(path, executor=executor)
    finally:
        executor.close()
    assert report["counts"]["done"] == 4 and report["metric"] == "final_accuracy"
    assert report["higher_is_better"] is True
    assert [p["label"] for p in report["points"]] == ["n_pairs=1", "n_pairs=2"]
    first = report["points"][0]
    assert first["final_accuracy"]["n"] == 2 and first["final_exact_match"]["n"] == 2
    assert "accuracy" in to_text(report).splitlines()[4]  # the table's header
    # A run in a worker process is the core loop in this one: the same numbers.
    run = next(r for r in make_plan(load_sweep(path)).runs
               if r.seed == 2 and r.point.label == "n_pairs=2")
    spec = run.point.spec
    config = TrainConfig.from_dict({**TRAIN, "steps": 10, "task": {**TASK, "n_pairs": 2}})
    alone = explorer.train(explorer.build_model(spec, seed=2), spec, config.resolve(spec),
                           seed=2)
    store = Store(path.with_suffix(".sqlite"), readonly=True)
    row = store.rows([run.key])[run.key]
    store.close()
    assert row["metrics"]["final_accuracy"] == alone["final_accuracy"]
    assert row["curve"] == alone["curve"]
    second = report["points"][1]
    accuracies = {seed: store_accuracy for seed, store_accuracy in second["delta"].items()}
    assert second["delta"]["n"] == 2 and accuracies["seeds"] == [1, 2]


def test_the_shipped_recall_sweep_plans_its_grid_without_torch_work():
    plan = make_plan(load_sweep("recall"))
    assert [p.label for p in plan.points] == [
        "attention=mha, n_pairs=2", "attention=mha, n_pairs=4",
        "attention={name: mha, window: 1}, n_pairs=2", "attention={name: mha, window: 1}, n_pairs=4"]
    assert [p.train.seq_len for p in plan.points] == [8, 16, 8, 16]
    assert plan.points[1].train.task == {"name": "recall", "n_pairs": 4, "n_keys": 8,
                                         "n_values": 8, "gap": 0, "train_examples": 0}
    assert len({r.key for r in plan.runs}) == 8


def test_the_shipped_mixers_sweep_compares_four_layouts_at_one_size_and_budget():
    plan = make_plan(load_sweep("mixers"))
    mixers = [[c["attention"].name for c in p.spec.layer_components()] for p in plan.points]
    assert mixers == [["mha"] * 4, ["gated_deltanet"] * 4, ["mamba2"] * 4,
                      ["gated_deltanet"] * 3 + ["mha"]]
    mamba = plan.points[2].spec.components_at(0)["attention"].params
    assert (mamba["expand"] * 64 % mamba["head_dim"], mamba["d_state"]) == (0, 16)
    assert {(p.spec.model.emb_dim, p.spec.model.n_layers, p.train.seq_len, p.train.batch_size)
            for p in plan.points} == {(64, 4, 16, 64)}
    assert {p.train.budget["steps"] for p in plan.points} == {400}
    assert plan.points[0].train.task == {"name": "recall", "n_pairs": 4, "n_keys": 16,
                                         "n_values": 16, "gap": 0, "train_examples": 0}
    assert [r.seed for r in plan.runs] == [1] * 4 + [2] * 4 + [3] * 4
    assert plan.baselines == {0: 0, 1: 0, 2: 0, 3: 0}  # softmax attention


# The settings a run key hashed before tasks existed (explorer.sweep.plan.run_key).
KEYED_BEFORE_TASKS = {
    "steps", "batch_size", "seq_len", "lr", "min_lr", "warmup", "schedule", "weight_decay",
    "grad_clip", "eval_every", "eval_every_tokens", "eval_tokens", "corpus", "threads", "device",
    "dtype", "compile", "budget"}


def test_an_existing_sweeps_runs_keep_their_settings_and_keys():
    from explorer.sweep.plan import ADDED_SETTINGS  # left out of a run's key at their default

    plan = make_plan(load_sweep(ROOT / "sweeps" / "smoke.yaml"))
    assert all(set(p.train.to_dict()) - set(ADDED_SETTINGS) == KEYED_BEFORE_TASKS
               for p in plan.points)
    assert all(p.train.seq_len == 64 for p in plan.points)
    text = TrainConfig.from_dict({"task": "text"}).resolve(plan.points[0].spec)
    assert set(text.to_dict()) - set(ADDED_SETTINGS) == KEYED_BEFORE_TASKS  # the corpus run


@pytest.mark.parametrize("changes, message", [
    ({"task": None, "train": TRAIN}, "grid.task.n_pairs: varies a task setting, and the sweep "
                                     "has no task"),
    ({"train": {**TRAIN, "task": "recall"}}, "task: given twice (also as train.task)"),
    ({"grid": {"task.gap": [0, 100]}, "task": {**TASK, "n_pairs": 1}},
     "task: at point gap=100: task 'recall' needs model.context_length >= 104; the spec has 32"),
    ({"grid": {"task.n_pairs": [1, 5]}}, "task.n_pairs: at point n_pairs=5: 5 distinct keys of "
                                         "1 token(s) from 4 symbols do not exist"),
    ({"train": {**TRAIN, "seq_len": 16}}, "train.seq_len: at point n_pairs=1: 16 disagrees with "
                                          "task 'recall', whose sequences are 4 tokens"),
])
def test_bad_task_sweeps_are_one_line_naming_the_key(tmp_path, changes, message):
    doc_changes = {k: v for k, v in changes.items() if v is not None}
    path = write(tmp_path, **doc_changes)
    if changes.get("task", 1) is None:
        doc = yaml.safe_load(path.read_text())
        del doc["task"]
        path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError) as info:
        make_plan(load_sweep(path))
    assert str(info.value).startswith(f"{path}: {message}")
