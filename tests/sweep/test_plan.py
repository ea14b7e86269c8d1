"""Sweep files and plans: one-line errors (exit 2), grid expansion, baselines, budgets per point,
and run keys that are stable and survive edits of the sweep file."""

import subprocess
import sys

import pytest
import yaml

import explorer
from explorer.cli import main
from explorer.sweep import load_sweep, make_plan
from tests.helpers.sweep_helpers import write_sweep


def plan_of(path):
    return make_plan(load_sweep(path))


def edit(path, **changes):
    doc = yaml.safe_load(path.read_text())
    doc.update(changes)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"grdi": {}}, "grdi: unknown key; did you mean 'grid'? valid keys: name, description, base, "
                   "set, grid, baseline, seeds, train, budget, track, scale, task"),
    ({"grid": {"components.positional": ["learned", "rop"]}},
     "grid.components.positional: 'rop': unknown positional component 'rop'; did you mean "
     "'rope'? registered: alibi, learned, none, rope, sinusoidal"),
    ({"grid": {"model.n_layers": [1, 0]}}, "grid.model.n_layers: 0: must be >= 1"),
    ({"grid": {"model.n_heads": [2, 3]}}, "grid.model.n_heads: 3: model.emb_dim: emb_dim 16 is "
                                          "not divisible by n_heads 3"),
    ({"grid": {"model.n_layer": [1, 2]}}, "grid.model.n_layer: 1: unknown key; did you mean "
                                          "'n_layers'?"),
    ({"grid": {"components.norm": "rmsnorm"}}, "grid.components.norm: expected a non-empty list "
                                               "of values, got 'rmsnorm'"),
    ({"grid": {"seed": [1, 2]}}, "grid.seed: does not change what is trained"),
    # one point over two seeds: each seed's spread, but nothing to compare it with
    ({"grid": {}}, "grid: is empty: one point, a sweep with nothing to compare; give a key two "
                   "or more values, e.g. grid: {components.norm: [layernorm, rmsnorm]}, or "
                   "several specs as base: [a.yaml, b.yaml]"),
    ({"grid": {"components.norm": ["rmsnorm"]}}, "grid: gives every key one value: one point"),
    ({"grid": {"train.lr": [1e-3, -1]}}, "grid.train.lr: must be > 0, got -1"),
    ({"baseline": {"components.norm": "scalenorm"}}, "baseline.components.norm: 'scalenorm' is "
                                                     "not one of its grid values"),
    ({"baseline": {"model.n_layers": 2}}, "baseline.model.n_layers: is not a grid key"),
    ({"seeds": [1, 1]}, "seeds: lists a seed twice"),
    ({"seeds": "three"}, "seeds: expected a list of seeds"),
    # 2**70 used to be accepted, and to fail in every run with an overflow.
    ({"seeds": [1, 2**70]}, "seeds[1]: must be <= 9223372036854775807, got "
                            "1180591620717411303424"),
    ({"seeds": [-1]}, "seeds[0]: must be >= 0, got -1"),
    ({"train": {"lrr": 1e-3}}, "train.lrr: unknown setting; did you mean 'lr'?"),
    ({"budget": {"tokens": 10}}, "train.budget: at point norm=layernorm: {tokens: 10} is less "
                                 "than one step of 4 x 16 tokens; at least 64"),
    ({"base": "missing.yaml"}, "base: spec"),
    ({"set": {"train.lr": 1}}, "set.train.lr: is a train setting; put it under train: as lr"),
    ({"set": {"model.n_layers": 0}}, "set.model.n_layers: 0: must be >= 1"),
])
def test_a_bad_sweep_file_is_one_line_naming_the_file_and_key(tmp_path, changes, message):
    path = edit(write_sweep(tmp_path), **changes)
    with pytest.raises(explorer.SpecError) as error:
        plan_of(path)
    assert str(error.value).startswith(f"{path}: {message}"), str(error.value)
    assert "\n" not in str(error.value)


def test_a_sweep_file_nested_too_deep_is_one_line(tmp_path, capsys):
    # It used to be "internal error: RecursionError", exit 1.
    path = write_sweep(tmp_path)
    path.write_text(path.read_text() + "set: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", str(path), "--dry-run"])
    assert exit_.value.code == 2
    line = capsys.readouterr().err
    assert line.startswith(f"Error: {path}: line ") and line.endswith(
        ": nested more than 100 levels deep; at most 100 levels of mappings and lists\n")


def test_the_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    path = edit(write_sweep(tmp_path), grid={"components.attention": ["mha", "flash"]})
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", str(path), "--dry-run"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    registered = ", ".join(explorer.get_plugin_manager().registry().names("attention"))
    assert err == (f"Error: {path}: grid.components.attention: 'flash': unknown attention "
                   f"component 'flash'; registered: {registered}\n")


def test_the_grid_expands_in_order_and_runs_go_seed_major(tmp_path):
    path = write_sweep(tmp_path, grid={"components.positional": ["learned", "rope", "none"],
                                       "model.n_layers": [1, 2]}, seeds=[7, 3],
                       baseline={"components.positional": "learned"})
    plan = plan_of(path)
    assert [p.label for p in plan.points] == [
        "positional=learned, n_layers=1", "positional=learned, n_layers=2",
        "positional=rope, n_layers=1", "positional=rope, n_layers=2",
        "positional=none, n_layers=1", "positional=none, n_layers=2"]
    assert plan.points[3].spec.components["positional"].name == "rope"
    assert plan.points[3].spec.model.n_layers == 2
    # the baseline fixes the named key and holds the others: rope at 2 layers vs learned at 2
    assert plan.baselines == {0: 0, 1: 1, 2: 0, 3: 1, 4: 0, 5: 1}
    assert [(r.point.index, r.seed) for r in plan.runs[:7]] == [
        (0, 7), (1, 7), (2, 7), (3, 7), (4, 7), (5, 7), (0, 3)]
    assert plan.columns == ["components.positional", "model.n_layers"]
    # the default baseline is the first point
    assert set(plan_of(edit(path, baseline=None)).baselines.values()) == {0}


def test_several_bases_are_grid_points_of_their_own(tmp_path):
    path = write_sweep(tmp_path, grid={})
    other = tmp_path / "wide.yaml"
    doc = yaml.safe_load((tmp_path / "micro.yaml").read_text())
    doc["model"]["emb_dim"] = 32
    other.write_text(yaml.safe_dump(doc))
    plan = plan_of(edit(path, base=["micro.yaml", "wide.yaml"], baseline={"base": "wide.yaml"}))
    assert [p.label for p in plan.points] == ["base=micro", "base=wide"]
    assert [p.spec.model.emb_dim for p in plan.points] == [16, 32]
    assert plan.baselines == {0: 1, 1: 1}


def test_a_budget_sets_each_points_steps(tmp_path):
    path = write_sweep(tmp_path, grid={"train.batch_size": [2, 4]})
    plan = plan_of(edit(path, budget={"tokens": 640}))
    assert [(p.label, p.train.steps) for p in plan.points] == [("batch_size=2", 20),
                                                               ("batch_size=4", 10)]
    # steps given beside the budget must agree with it at every point
    doc = yaml.safe_load(path.read_text())
    edit(path, train={**doc["train"], "steps": 20})
    with pytest.raises(explorer.SpecError, match=r"train.steps: at point batch_size=4: 20 "
                                                 r"disagrees with budget \{tokens: 640\}"):
        plan_of(path)


def test_points_that_train_the_same_model_are_refused(tmp_path):
    path = edit(write_sweep(tmp_path), grid={"components.norm.eps": [1e-5, 0.00001]})
    with pytest.raises(explorer.SpecError, match="grid.components.norm.eps: lists 1e-05 twice"):
        plan_of(path)
    path = edit(path, grid={"components.ffn": ["mlp", {"name": "mlp", "expansion": 4}]})
    with pytest.raises(explorer.SpecError, match="grid: points ffn=mlp and ffn={name: mlp, "
                                                 "expansion: 4} train the same model"):
        plan_of(path)


KEYS = ("import sys; sys.path.insert(0, 'tests')\n"
        "from explorer.sweep import load_sweep, make_plan\n"
        "print(' '.join(r.key for r in make_plan(load_sweep({path!r})).runs))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])")


def test_run_keys_are_stable_across_processes_and_planning_needs_no_torch(tmp_path):
    path = write_sweep(tmp_path)
    proc = subprocess.run([sys.executable, "-c", KEYS.format(path=str(path))],
                          capture_output=True, text=True, check=True)
    keys, modules = proc.stdout.splitlines()
    assert keys.split() == [r.key for r in plan_of(path).runs]
    assert modules == "[]"


def test_an_edited_sweep_keeps_the_keys_of_runs_that_still_match(tmp_path):
    path = write_sweep(tmp_path, grid={"components.norm": ["layernorm", "rmsnorm"]})
    before = {(r.point.label, r.seed): r.key for r in plan_of(path).runs}
    # a new grid value, a new seed, another name and description: old runs keep their keys
    after = {(r.point.label, r.seed): r.key for r in plan_of(edit(
        path, grid={"components.norm": ["layernorm", "rmsnorm", "none"]}, seeds=[1, 2, 3],
        name="renamed", description="more")).runs}
    assert len(after) == 9 and all(after[k] == key for k, key in before.items())
    # anything that changes the result changes the key
    doc = yaml.safe_load(path.read_text())
    changed = plan_of(edit(path, train={**doc["train"], "lr": 1e-3})).runs
    assert not set(r.key for r in changed) & set(before.values())
    assert len({r.key for r in changed}) == len(changed)


def test_sweep_help_does_not_import_torch():
    code = ("import sys\nfrom explorer.cli import main\ntry:\n    main(['sweep', '--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray'))[:3])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.splitlines()[-1] == "[]", proc.stderr


def test_the_ray_executor_without_ray_says_how_to_install_it(monkeypatch):
    from explorer.sweep.executors import make_executor

    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray sees
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # restored afterwards
    with pytest.raises(explorer.ExplorerError, match=r'^--executor ray needs Ray: pip install '
                                                     r'-e "\.\[ray\]"$'):
        make_executor("ray", workers=1)
    with pytest.raises(explorer.ExplorerError,
                       match="^--executor: unknown executor 'dask'; known: local, ray$"):
        make_executor("dask")
    with pytest.raises(explorer.ExplorerError, match="^--executor: unknown executor 'rya'; did "
                                                     "you mean 'ray'[?] known: local, ray$"):
        make_executor("rya")
