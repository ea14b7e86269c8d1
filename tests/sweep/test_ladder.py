"""Size ladders (issue 22 §1): ``scale:`` in the sweep file (rungs, rules, a budget per
parameter, one-line errors), the plan's rungs x variants x seeds with their sizes counted by
hand, the ladder report from a store written by hand with losses drawn from known laws, and a
tiny ladder trained for real on the local executor and on a real local Ray."""

import importlib.util
import json

import pytest
import yaml

from explorer.errors import SpecError
from explorer.sweep import ladder_report, load_sweep, make_plan, run_sweep
from explorer.sweep.results import build_report, to_markdown, to_text
from explorer.sweep.store import Store
from tests.helpers import run_cli
from tests.helpers.sweep_helpers import outcome, write_sweep

SCALE = {"ladder": {"model.emb_dim": [16, 24, 32, 48]}, "rules": {"model.n_heads": "emb_dim / 8"},
         "tokens_per_param": 0.5, "fit": {"x": "params", "extrapolate_to": 1.0e+6}}


def write_ladder(folder, scale=SCALE, grid=None, budget=None, seeds=(1, 2), **extra):
    """A ladder sweep over the helpers' 1-block model; ``budget`` None: scale's own."""
    grid = {"components.norm": ["layernorm", "rmsnorm"]} if grid is None else grid
    path = write_sweep(folder, grid=grid, seeds=seeds, scale=scale, **extra)
    doc = yaml.safe_load(path.read_text())
    if budget is None:
        del doc["budget"]
    else:
        doc["budget"] = budget
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def nonembedding(d, norm):
    """One pre-norm block of width d (no qkv bias, MLP x4 with biases) and the final norm:
    q, k, v 3d^2; out d^2+d; MLP 4d^2+4d + 4d^2+d; three norms of 2d (layernorm: scale and
    shift) or d (rmsnorm: scale)."""
    return 12 * d * d + 6 * d + 3 * (2 * d if norm == "layernorm" else d)


def test_the_plan_trains_every_variant_at_every_rung_with_its_rules_and_budget(tmp_path):
    plan = make_plan(load_sweep(write_ladder(tmp_path)))
    assert [p.label for p in plan.points[:3]] == [
        "emb_dim=16, norm=layernorm", "emb_dim=16, norm=rmsnorm", "emb_dim=24, norm=layernorm"]
    assert len(plan.points) == 8 and len(plan.runs) == 16
    for point in plan.points:
        d, norm = point.coords["model.emb_dim"], point.coords["components.norm"]
        assert point.spec.model.n_heads == d // 8  # the rule
        params = nonembedding(d, norm)
        assert point.size["params"] == params  # d=16, layernorm: 3264, as counted by hand
        tokens_per_step = 4 * 16  # batch_size x seq_len
        assert point.train.steps == round(0.5 * params) // tokens_per_step
        assert point.size["tokens"] == point.train.steps * tokens_per_step
        # each variant is compared with the baseline variant at its own rung
        baseline = plan.points[plan.baselines[point.index]]
        assert baseline.coords == {**point.coords, "components.norm": "layernorm"}
    assert nonembedding(16, "layernorm") == 3264


def test_a_depth_and_width_ladder_is_zipped_and_a_fixed_budget_kept(tmp_path):
    scale = {"ladder": {"model.emb_dim": [16, 32, 48], "model.n_layers": [1, 2, 3]},
             "rules": {"model.n_heads": "emb_dim / 16",
                       "components.ffn": {"name": "mlp", "expansion": 2}},
             "fit": {"x": "flops", "extrapolate_to": 1e12}}
    plan = make_plan(load_sweep(write_ladder(tmp_path, scale, grid={}, budget={"steps": 5})))
    assert [(p.spec.model.emb_dim, p.spec.model.n_layers, p.spec.model.n_heads,
             p.spec.components["ffn"].params["expansion"]) for p in plan.points] == [
        (16, 1, 1, 2), (32, 2, 2, 2), (48, 3, 3, 2)]
    assert {p.train.steps for p in plan.points} == {5}
    assert [p.label for p in plan.points] == ["emb_dim=16, n_layers=1", "emb_dim=32, n_layers=2",
                                              "emb_dim=48, n_layers=3"]


@pytest.mark.parametrize("scale, extra, key, message", [
    ({**SCALE, "ladders": 1}, {}, "scale.ladders", "unknown key"),
    ({**SCALE, "ladder": {"model.emb_dim": [16, 32]}}, {}, "scale.ladder.model.emb_dim",
     "expected 3 or more positive whole numbers"),
    ({**SCALE, "ladder": {"model.emb_dim": [32, 16, 48]}}, {}, "scale.ladder.model.emb_dim",
     "does not grow rung by rung"),
    ({**SCALE, "ladder": {"model.emb_dim": [16, 32, 48], "model.n_layers": [1, 2, 3, 4]}}, {},
     "scale.ladder", "its keys have 3 and 4 values"),
    ({**SCALE, "ladder": {"components.norm": [1, 2, 3]}}, {}, "scale.ladder",
     "is not a model size key"),
    ({**SCALE, "rules": {"model.n_heads": "width / 8"}}, {}, "scale.rules.model.n_heads",
     "'width / 8' is not a rule"),
    ({**SCALE, "rules": {"model.n_heads": "emb_dim / 5"}}, {}, "scale.rules.model.n_heads",
     "emb_dim / 5 leaves a remainder at emb_dim=16"),
    ({**SCALE, "fit": {"x": "tokens", "extrapolate_to": 1e9}}, {}, "scale.fit.x",
     "'tokens' is not a size"),
    ({**SCALE, "fit": {"x": "params"}}, {}, "scale.fit.extrapolate_to", "missing"),
    ({**SCALE, "tokens_per_param": -1}, {}, "scale.tokens_per_param",
     "expected a positive number"),
    (SCALE, {"budget": {"steps": 5}}, "budget", "given beside scale.tokens_per_param"),
    (SCALE, {"set": {"model.n_heads": 2}}, "set.model.n_heads", "is also set by scale:"),
])
def test_a_bad_scale_is_one_line_naming_the_key(tmp_path, scale, extra, key, message):
    path = write_ladder(tmp_path, scale, budget=extra.pop("budget", None), **extra)
    with pytest.raises(SpecError) as raised:
        load_sweep(path)
    assert raised.value.key == key and message in raised.value.problem
    assert "\n" not in str(raised.value)


def test_a_rung_the_model_refuses_is_named(tmp_path, capsys):
    scale = {**SCALE, "rules": {"model.n_heads": 3}}  # 3 heads cannot split a width of 16
    code, out, err = run_cli(capsys, "sweep", write_ladder(tmp_path, scale), "--dry-run")
    assert code == 2 and err.startswith("Error: ") and err.count("\n") == 1
    assert "scale" in err and "rung emb_dim=16" in err


# -- the report, from a store written by hand -------------------------------------------------

E, A, ALPHA = 1.5, 300.0, 0.4


def law(x, E=E, A=A, alpha=ALPHA):
    return E + A * x ** -alpha


def hand_store(folder, loss):
    """A 3-norm ladder whose store holds ``loss(point, seed)`` for every run."""
    path = write_ladder(folder, grid={"components.norm": ["layernorm", "rmsnorm", "none"]},
                        seeds=(1, 2, 3))
    plan = make_plan(load_sweep(path))
    store = Store(path.with_suffix(".sqlite"))
    with store.driver_lock():
        store.add(plan, 1)
        for run in plan.runs:
            store.start(run.key)
            store.finish(outcome(run.key, loss(run.point, run.seed)))
    return plan, store


def test_the_ladder_report_recovers_known_laws_their_difference_and_crossing(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setattr(ladder_report, "RESAMPLES", 200)
    seed_offset = {1: -0.002, 2: 0.0, 3: 0.003}  # shared by every variant: cancels when paired

    def loss(point, seed):
        x, norm = point.size["params"], point.coords["components.norm"]
        if norm == "layernorm":
            return law(x) + seed_offset[seed]
        if norm == "rmsnorm":
            return law(x) - 0.05 + seed_offset[seed]
        return law(x, E=1.0, A=(law(1e6) - 1.0) * 1e6 ** 0.25, alpha=0.25) + seed_offset[seed]

    plan, store = hand_store(tmp_path, loss)
    report = build_report(plan, store)
    ladder = report["ladder"]
    layer, rms, none = ladder["variants"]
    assert [v["label"] for v in ladder["variants"]] == ["norm=layernorm", "norm=rmsnorm",
                                                        "norm=none"]
    assert layer["is_baseline"] and layer["difference"] is None
    fit = layer["fit"]  # the seed offsets average to 1/3000 at every rung: E moves by that
    assert (fit["E"], fit["A"], fit["alpha"]) == pytest.approx((E + 1 / 3000, A, ALPHA),
                                                                rel=2e-3)
    assert fit["prediction"] == pytest.approx(law(1e6) + 1 / 3000, rel=1e-3)
    low, high = fit["intervals"]["prediction"]
    assert low <= fit["prediction"] <= high
    diff = rms["difference"]
    assert diff["difference"] == pytest.approx(-0.05, abs=1e-3)
    assert diff["interval"][0] <= -0.05 <= diff["interval"][1] and diff["significant"]
    # none: a law through law(1e6) at 1e6 with another slope: the curves cross there
    crossing = none["difference"]
    assert crossing["crossing"] == pytest.approx(1e6, rel=0.05)
    assert crossing["crossing_interval"][0] <= 1e6 <= crossing["crossing_interval"][1]
    assert crossing["crossing_share"] > 0.9
    assert rms["difference"]["crossing"] is None  # parallel curves never cross
    assert [r["x"] for r in layer["rungs"]] == [nonembedding(d, "layernorm")
                                                for d in (16, 24, 32, 48)]
    text, markdown = to_text(report), to_markdown(report)
    assert "size ladder: final loss against non-embedding parameters" in text
    assert "norm=rmsnorm" in text.split("size ladder")[1] and "-0.0500" in text
    share = f"({crossing['crossing_share']:.0%} cross)"
    assert share in text.splitlines()[-1]  # the none row: its crossing, of how many resamples
    assert "**Size ladder**" in markdown
    json.loads(json.dumps(report))  # plain data
    store.close()


def test_a_ladder_with_too_few_rungs_done_says_so(tmp_path):
    plan, store = hand_store(tmp_path, lambda point, seed: law(point.size["params"]))
    store.db.execute("UPDATE runs SET state='pending' WHERE key IN (%s)" % ",".join(
        f"'{r.key}'" for r in plan.runs if r.point.coords["model.emb_dim"] in (16, 24)
        and r.point.coords["components.norm"] == "none"))
    store.db.commit()
    report = build_report(plan, store)
    none = report["ladder"]["variants"][2]
    assert none["fit"] is None and none["fit_problem"] == ("2 of 4 rungs have a finished run; "
                                                           "a fit needs 3")
    assert none["difference_problem"] == "fewer than 3 rungs where both have a seed done"
    assert "norm=none: 2 of 4 rungs have a finished run" in to_text(report)
    store.close()


# -- for real: a tiny ladder on the local executor and on Ray ---------------------------------

TINY_SCALE = {"ladder": {"model.emb_dim": [8, 16, 24]}, "rules": {"model.n_heads": "emb_dim / 8"},
              "fit": {"x": "flops", "extrapolate_to": 1e10}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ladder")
    path = write_ladder(folder, TINY_SCALE, budget={"steps": 4})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ladder_report, "RESAMPLES", 100)  # intervals are not what is tested here
        return path, run_sweep(path, executor="local", workers=2)


@pytest.mark.slow  # 12 real runs and their fits (a minute on 2 cores); .ci/run runs it
def test_a_tiny_ladder_trains_and_fits_every_variant(trained, capsys, tmp_path, monkeypatch):
    path, result = trained
    monkeypatch.setattr(ladder_report, "RESAMPLES", 100)
    assert result["counts"]["done"] == 12  # 3 rungs x 2 variants x 2 seeds
    ladder = result["ladder"]
    assert ladder["x"] == "flops" and ladder["extrapolate_to"] == 1e10
    for variant in ladder["variants"]:
        assert variant["fit"] is not None, variant["fit_problem"]
        assert [len(r["losses"]) for r in variant["rungs"]] == [2, 2, 2]
        point = result["points"][variant["rungs"][0]["index"]]
        assert variant["rungs"][0][  # the rung's mean is the main table's
            "final_val_loss"]["mean"] == point["final_val_loss"]["mean"]
    assert ladder["variants"][1]["difference"]["interval"] is not None
    code, out, _ = run_cli(capsys, "sweep", path, "--report", "--format", "json", "--plots",
                           tmp_path / "plots", "--html", tmp_path / "page.html")
    assert code == 0
    assert json.loads(out)["ladder"]["variants"][1]["label"] == "norm=rmsnorm"
    assert (tmp_path / "plots" / "ladder.png").stat().st_size > 10_000
    page = (tmp_path / "page.html").read_text()
    assert '<section id="ladder">' in page and "Size ladder" in page
    assert "Final loss against size" in page  # the chart's caption


@pytest.mark.slow  # a Ray start and 12 runs; test_a_tiny_ladder_trains_... is its local twin
def test_the_same_ladder_on_ray_gives_the_local_numbers(trained, tmp_path):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed: pip install -e '.[ray]' (the CI installs it)")
    path, local = trained
    on_ray = run_sweep(path, executor="ray", workers=2, db=tmp_path / "ray.sqlite")
    assert on_ray["executor"].startswith("ray: 2 runs at once on a local Ray")
    for mine, theirs in zip(on_ray["ladder"]["variants"], local["ladder"]["variants"]):
        assert [r["losses"] for r in mine["rungs"]] == [r["losses"] for r in theirs["rungs"]]
        assert mine["fit"]["alpha"] == pytest.approx(theirs["fit"]["alpha"])
