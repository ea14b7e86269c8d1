"""``explorer sweep --dry-run`` over grids of sizes: costs from compact models, the time per run
measured on a few points and predicted for the others, and never a real build of a model that
cannot be timed."""

import pytest

import explorer.sweep.timing as timing
from explorer.sweep import load_sweep, make_plan
from explorer.sweep.estimate import dry_run_text, estimate
from tests.helpers.sweep_helpers import TINY, write_sweep


def test_fit_recovers_both_terms_and_keeps_them_non_negative():
    rows = [(1, 10.0), (2, 5.0), (4, 40.0)]
    exact = timing.fit(rows, [2 * u + 3 * v for u, v in rows])
    assert exact(3, 7.0) == pytest.approx(2 * 3 + 3 * 7)
    # The two-term fit would be a = -1, b = 11/3 (y falls as u grows at fixed v): one term is
    # fitted instead, the better of a = 19/14 (residual 3.2) and b = sum(vy)/sum(v^2) = 13/6 (0.8).
    one = timing.fit([(1, 1.0), (2, 1.0), (3, 2.0)], [3.0, 2.0, 4.0])
    assert one(5, 3.0) == pytest.approx(13 / 6 * 3)
    assert timing.fit([(5, 2.0)], [1.0])(10, 4.0) == pytest.approx(2.0)  # one point: a rate


def test_choose_spreads_the_timed_points_over_the_flops():
    candidates = [(float(f), i) for i, f in enumerate(range(100, 0, -5))]  # 20, dearest first
    chosen = timing.choose(candidates)
    assert len(chosen) == timing.TIMED_POINTS
    flops = sorted(candidates[i][0] for i in chosen)
    assert flops[0] == 5.0 and flops[-1] == 100.0
    assert timing.choose(candidates[:3]) == [2, 1, 0]


def _estimate(path):
    plan = make_plan(load_sweep(path))
    return plan, estimate(plan, [run.key for run in plan.runs])


def test_a_grid_is_timed_on_a_few_points_and_predicted_for_the_rest(tmp_path, monkeypatch):
    timed = []
    measure = timing.measure
    monkeypatch.setattr(timing, "measure", lambda spec, *args: timed.append(spec) or
                        measure(spec, *args))
    path = write_sweep(tmp_path, seeds=[1], grid={"model.n_layers": [1, 2, 3],
                                                  "model.emb_dim": [8, 16, 24, 32]})
    plan, est = _estimate(path)
    assert len(timed) == timing.TIMED_POINTS == 5
    bases = [p["time_basis"] for p in est["points"]]
    assert bases.count("measured") == 5 and bases.count("predicted") == 7
    assert all(p["seconds_per_run"] > 0 for p in est["points"])
    dearest = max(range(12), key=lambda i: est["points"][i]["training_flops"])
    assert est["points"][dearest]["time_basis"] == "measured"  # the ends are timed
    text = dry_run_text(est)
    assert "time/run: measured on 5 points" in text and "~ predicted from them" in text
    # The evaluation reads up to eval_tokens (256) of each split at every evaluation: 3 of them.
    assert {p["eval_tokens"] for p in est["points"]} == {3 * 2 * 256}


def test_the_evaluation_at_eval_lengths_is_in_the_time(tmp_path, monkeypatch):
    """eval_lengths [16, 64] read 256 more tokens each (16 windows of 16, 4 of 64, in the first
    eval_tokens = 256 of the validation split); a task reads its validation set's count of
    sequences (256 // 16 = 16) at each length instead."""
    monkeypatch.setattr(timing, "measure", lambda *args: (0.01, 1e-6))
    grid = {"components.norm": ["layernorm", "rmsnorm"]}
    est = _estimate(write_sweep(tmp_path, grid=grid, seeds=[1],
                                train={"eval_lengths": [16, 64]}))[1]
    point = est["points"][0]
    assert [p["eval_tokens"] for p in est["points"]] == [3 * 2 * 256 + 256 + 256] * 2
    assert point["evaluation_seconds"] == pytest.approx(point["eval_tokens"] * 1e-6)
    task = write_sweep(tmp_path, grid=grid, seeds=[1], name="task.yaml",
                       train={"eval_lengths": [16, 24]},
                       task={"name": "induction", "prefix_len": 8, "n_symbols": 32})
    assert [p["eval_tokens"] for p in _estimate(task)[1]["points"]] == \
        [3 * 2 * 256 + 16 * (16 + 24)] * 2


def test_sizes_too_large_to_time_get_a_lower_bound_and_no_real_model(tmp_path, monkeypatch):
    def refuse(*args):
        raise AssertionError("a model that cannot be timed was built")

    monkeypatch.setattr(timing, "measure", refuse)
    monkeypatch.setattr(timing, "matmul_flops_per_second", lambda threads, device: 1e11)
    spec = {**TINY, "model": {**TINY["model"], "context_length": 2048}}
    path = write_sweep(tmp_path, spec=spec, grid={"model.n_layers": [24, 96],
                                                  "model.emb_dim": [4096, 12288]},
                       seeds=[1], train={"batch_size": 1, "seq_len": 2048, "eval_tokens": 4096})
    plan, est = _estimate(path)
    for point, p in zip(plan.points, est["points"]):
        assert p["time_basis"] == "lower_bound"
        per_token = p["training_flops_per_token"]
        step_flops, forward = per_token * 2048, per_token / 3
        expected = (p["steps"] * step_flops + p["eval_tokens"] * forward) / 1e11
        assert p["seconds_per_run"] == pytest.approx(expected)
    # 96 x 12288, GPT-3's blocks without qkv biases: 12h^2 + 10h each; untied embedding and
    # head of 256 tokens, 2048 learned positions, the final norm.
    h = 12288
    blocks = 96 * (12 * h**2 + 10 * h)
    assert est["points"][-1]["parameters"] == blocks + 2 * 256 * h + 2048 * h + 2 * h
    text = dry_run_text(est)
    assert "estimated wall time: >=" in text and "a lower bound" in text
    row = next(line for line in text.splitlines() if line.startswith("n_layers=96, emb_dim=12288"))
    assert " >=" in row


@pytest.mark.slow
@pytest.mark.parametrize("widths", [range(16, 161, 16), range(1536, 15361, 1536)])
def test_a_hundred_point_grid_builds_at_most_five_real_models(tmp_path, monkeypatch, widths):
    timed = []
    measure = timing.measure
    monkeypatch.setattr(timing, "measure", lambda spec, *args: timed.append(spec) or
                        measure(spec, *args))
    spec = {**TINY, "model": {**TINY["model"], "context_length": 128}}
    path = write_sweep(tmp_path, spec=spec, seeds=[1], grid={
        "model.n_layers": list(range(1, 11)), "model.emb_dim": list(widths)},
        train={"batch_size": 1, "seq_len": 128})
    plan, est = _estimate(path)
    assert len(est["points"]) == 100 and len(timed) <= timing.TIMED_POINTS
    assert len({p["parameters"] for p in est["points"]}) == 100
