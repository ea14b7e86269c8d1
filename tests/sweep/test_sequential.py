"""Adaptive seeds (issue 22 §3): the Bayes factor against numerical integration, the error rate
over 1,000 simulated sweeps with no true difference, fewer seeds than max with one, the
schedule from a store written by hand, and the driver adding seeds in rounds (canned outcomes,
then real runs on the local executor and on Ray)."""

import importlib.util

import numpy as np
import pytest
import yaml

from explorer.errors import SpecError
from explorer.sweep import load_sweep, make_plan, report, run_sweep, status
from explorer.sweep.results import to_markdown, to_text
from explorer.sweep.sequential import ALPHA, bayes_factor, decide, simulate
from tests.helpers.sweep_helpers import outcome, write_sweep

ADAPTIVE = {"min": 3, "max": 6, "until": "decided"}


def reference_bayes_factor(x, g=1.0):
    """The Bayes factor by numerical integration: H1 delta ~ N(0, g), mu = delta * sigma;
    both with the prior 1/sigma on sigma."""
    import math

    from scipy import integrate

    n, total, squares = len(x), float(np.sum(x)), float(np.sum(x ** 2))

    def likelihood(mu, sigma):  # the normal density of x, in plain floats (fast to integrate)
        return math.exp(-(squares - 2 * mu * total + n * mu * mu) / (2 * sigma * sigma)) / (
            sigma * math.sqrt(2 * math.pi)) ** n

    def prior(delta):
        return math.exp(-delta * delta / (2 * g)) / math.sqrt(2 * math.pi * g)

    h1 = integrate.dblquad(lambda delta, sigma: likelihood(delta * sigma, sigma) / sigma
                           * prior(delta), 1e-3, 20, -8, 8)[0]
    h0 = integrate.quad(lambda sigma: likelihood(0.0, sigma) / sigma, 1e-3, 20)[0]
    return h1 / h0


@pytest.mark.parametrize("x", [[0.3, -0.5, 1.2, 0.8, 0.1], [1.1, 0.9, 1.4, 0.7], [0.1, -0.1, 0.2]])
def test_the_bayes_factor_is_the_integral_it_stands_for(x):
    x = np.asarray(x)
    assert bayes_factor(len(x), x.mean(), x.std(ddof=1)) == pytest.approx(
        reference_bayes_factor(x), rel=1e-4)


def test_the_bayes_factor_by_hand_and_its_bounds():
    # n = 3, mean 1, sd 1: t^2 = 3, nu = 2; (1 + 3)^-1/2 * ((1 + 3/8) / (1 + 3/2))^-3/2
    assert bayes_factor(3, 1.0, 1.0) == pytest.approx(0.5 * (1.375 / 2.5) ** -1.5)
    assert bayes_factor(3, 1.0, 0.0) == np.inf and bayes_factor(1, 1.0, 0.0) == 1.0
    assert decide([0.5, 0.5001, 0.4999, 0.5002, 0.4998])[0] == "differs"  # (1 + 5)^2 = 36
    assert decide([0.5, 0.5001, 0.4999])[0] == "undecided"  # at most (1 + 3)^1 = 4 < 20


def test_with_no_true_difference_at_most_5_percent_of_1000_sweeps_find_one():
    rng = np.random.default_rng(2022)
    differences = rng.normal(0.0, 1.0, (1000, 16))
    rejected, used, _ = simulate(differences, min_seeds=3)
    # Ville's inequality bounds the rate by alpha at any stopping time; this test gives less
    # (conservative, as such tests are): 1.6% here, over 5 standard errors of a 1000-sweep rate
    # (0.4%) below 5%, so Monte-Carlo noise cannot take it over.
    assert rejected.mean() <= ALPHA
    assert rejected.mean() == pytest.approx(0.016)
    assert used.min() >= 3 and used.max() <= 16
    # the same sweeps run to 16 seeds and tested with a t-test at every look would cross 5%
    from scipy.stats import t

    n = np.arange(3, 17)
    cumulative = np.cumsum(differences, axis=1)[:, 2:] / n
    sd = np.array([differences[:, :k].std(axis=1, ddof=1) for k in n]).T
    naive = (np.abs(cumulative / (sd / np.sqrt(n))) > t.ppf(0.975, n - 1)).any(axis=1)
    assert naive.mean() > 2 * ALPHA  # why a sequential procedure: peeking inflates the error


def test_with_a_true_difference_it_decides_with_fewer_seeds_than_max():
    rng = np.random.default_rng(2023)
    differences = rng.normal(1.5, 1.0, (1000, 16))  # a difference of 1.5 seed sds
    rejected, used, decided = simulate(differences, min_seeds=3)
    assert rejected.mean() > 0.95 and used.mean() < 10  # about 8.5 of 16
    assert (used[rejected] < 16).mean() > 0.9


# -- the schedule and the driver ---------------------------------------------------------------

def write_adaptive(folder, seeds=ADAPTIVE):
    """Three norms (layernorm the baseline), 3-step runs, adaptive ``seeds``."""
    path = write_sweep(folder, grid={"components.norm": ["layernorm", "rmsnorm", "none"]},
                       steps=3)
    doc = yaml.safe_load(path.read_text())
    doc["seeds"] = seeds
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# rmsnorm: 0.5 below layernorm on every seed (give or take 1e-4); none: +-0.01 around it
NOISE = {1: 1e-4, 2: -1e-4, 3: 2e-4, 4: -2e-4, 5: 0.0, 6: 1e-4}


def canned_loss(label, seed):
    if label == "norm=rmsnorm":
        return 1.5 + NOISE[seed]
    if label == "norm=none":
        return 2.0 + (0.01 if seed % 2 else -0.01)
    return 2.0


class CannedExecutor:
    """Runs nothing: each task's outcome is canned_loss of its point and seed (the driver's
    rounds are what is tested here; the real executors come below)."""

    slots = 2

    def __init__(self):
        self.submitted, self.waiting = [], []

    def describe(self):
        return "canned"

    def submit(self, task):
        self.submitted.append((task["label"], task["seed"]))
        self.waiting.append(outcome(task["key"], canned_loss(task["label"], task["seed"])))
        return {"worker": "1", "host": "here"}

    def wait(self, timeout):
        done, self.waiting = self.waiting, []
        return done

    def cancel(self):
        self.waiting = []

    def close(self):
        pass


def test_the_driver_adds_seeds_until_each_point_is_decided_and_resumes(tmp_path):
    path = write_adaptive(tmp_path)
    engine = CannedExecutor()
    result = run_sweep(path, executor=engine)
    ran = sorted(engine.submitted)
    # rmsnorm: decided at 5 seeds (at 3 and 4 no t can reach 1/alpha: (1+3)^1, (1+4)^1.5 < 20)
    assert [s for label, s in ran if label == "norm=rmsnorm"] == [1, 2, 3, 4, 5]
    # none: undecided at every look up to max; the baseline runs as many as the most it needs
    assert [s for label, s in ran if label == "norm=none"] == [1, 2, 3, 4, 5, 6]
    assert [s for label, s in ran if label == "norm=layernorm"] == [1, 2, 3, 4, 5, 6]
    by_label = {p["label"]: p for p in result["points"]}
    assert by_label["norm=rmsnorm"]["adaptive"]["verdict"] == "differs"
    assert by_label["norm=rmsnorm"]["adaptive"]["bayes_factor"] >= 1 / ALPHA
    assert by_label["norm=rmsnorm"]["done"] == by_label["norm=rmsnorm"]["seeds"] == 5
    assert by_label["norm=none"]["adaptive"]["verdict"] == "max reached"
    assert by_label["norm=layernorm"]["adaptive"]["verdict"] == "baseline"
    assert result["complete"] and result["counts"]["pending"] == 0
    assert by_label["norm=rmsnorm"]["delta"]["mean"] == pytest.approx(-0.5, abs=1e-3)
    text = to_text(result)
    assert "adaptive seeds (3 to 6, until decided" in text
    assert "norm=rmsnorm    5/5 seeds  decided: differs (Bayes factor >= 1/alpha = 20)" in text
    assert "norm=none       6/6 seeds  max reached, undecided" in text
    assert "17 runs (3 points 3 to 6 seeds each)" in text
    assert "```\nadaptive seeds (3 to 6" in to_markdown(result)
    from explorer.html import sweep_page

    page = sweep_page(result).html
    assert "<h3>Adaptive seeds</h3>" in page and "5/5 seeds  decided: differs" in page
    # resumed: the store knows which seeds ran, so a second start runs nothing
    again = CannedExecutor()
    run_sweep(path, executor=again)
    assert again.submitted == []
    assert status(path)["counts"] == {"pending": 0, "running": 0, "done": 17, "failed": 0}


def test_a_sweep_stopped_between_rounds_picks_up_there(tmp_path):
    from explorer.sweep.store import Store

    path = write_adaptive(tmp_path)
    plan = make_plan(load_sweep(path))
    store = Store(path.with_suffix(".sqlite"))
    with store.driver_lock():  # the first round (3 seeds) done by an earlier driver
        store.add(plan, 1)
        for run in plan.runs:
            if run.seed <= 3:
                store.start(run.key)
                store.finish(outcome(run.key, canned_loss(run.point.label, run.seed)))
    store.close()
    mid = report(path)
    assert [p["adaptive"]["seeds"] for p in mid["points"]] == [4, 4, 4] and not mid["complete"]
    engine = CannedExecutor()
    run_sweep(path, executor=engine)
    assert min(seed for _, seed in engine.submitted) == 4  # seeds 1-3 are not run again


def test_a_task_sweep_decides_on_accuracy_not_loss(tmp_path):
    """Two recall levels whose accuracy differs by 0.3 on every seed (give or take 1e-4) while
    their loss on the targets is the same: the schedule reads the report's metric, so the point
    is decided at 5 seeds, as rmsnorm's loss is above."""
    path = write_sweep(tmp_path, grid={"task.n_pairs": [1, 2]}, steps=3, seeds=[1],
                       task={"name": "recall", "n_keys": 4, "n_values": 4})
    doc = yaml.safe_load(path.read_text())
    doc["seeds"] = ADAPTIVE
    doc["train"].pop("seq_len")  # the task's
    path.write_text(yaml.safe_dump(doc, sort_keys=False))

    class CannedAccuracy(CannedExecutor):
        def submit(self, task):
            self.submitted.append((task["label"], task["seed"]))
            done = outcome(task["key"], 2.0)
            accuracy = 0.9 + NOISE[task["seed"]] if task["label"] == "n_pairs=2" else 0.6
            done["metrics"].update(final_accuracy=accuracy, final_exact_match=accuracy)
            self.waiting.append(done)
            return {"worker": "1", "host": "here"}

    engine = CannedAccuracy()
    result = run_sweep(path, executor=engine)
    assert result["metric"] == "final_accuracy"
    assert [s for label, s in sorted(engine.submitted) if label == "n_pairs=2"] == [1, 2, 3, 4, 5]
    second = {p["label"]: p for p in result["points"]}["n_pairs=2"]
    assert second["adaptive"]["verdict"] == "differs"
    assert second["delta"]["mean"] == pytest.approx(0.3, abs=1e-3)


@pytest.mark.parametrize("seeds, key, message", [
    ({"min": 3, "max": 16}, "seeds.until", "missing"),
    ({"min": 3, "max": 16, "until": "done"}, "seeds.until", "'done' is not a stopping rule"),
    ({"min": 1, "max": 16, "until": "decided"}, "seeds.min", "expected a whole number >= 2"),
    ({"min": 5, "max": 4, "until": "decided"}, "seeds.max", "expected a whole number >= 5"),
    ({"min": 3, "max": 6, "until": "decided", "alpha": 1}, "seeds.alpha", "unknown key"),
])
def test_bad_adaptive_seeds_are_one_line(tmp_path, seeds, key, message):
    with pytest.raises(SpecError) as raised:
        load_sweep(write_adaptive(tmp_path, seeds))
    assert raised.value.key == key and message in raised.value.problem


def test_adaptive_seeds_on_the_local_executor_for_real(tmp_path):
    path = write_adaptive(tmp_path, {"min": 2, "max": 3, "until": "decided"})
    result = run_sweep(path, executor="local", workers=2)
    for point in result["points"]:
        entry = point["adaptive"]
        assert point["done"] == entry["seeds"] and entry["seeds"] in (2, 3)
        assert entry["verdict"] in ("baseline", "differs", "no difference", "max reached")
    assert result["complete"]


@pytest.mark.slow  # a Ray start; the canned and local tests above check the same rounds
def test_adaptive_seeds_on_ray(tmp_path):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed: pip install -e '.[ray]' (the CI installs it)")
    path = write_adaptive(tmp_path, {"min": 2, "max": 3, "until": "decided"})
    local = run_sweep(path, executor="local", workers=2)
    on_ray = run_sweep(path, executor="ray", workers=2, db=tmp_path / "ray.sqlite")
    assert [p["adaptive"] for p in on_ray["points"]] == [p["adaptive"] for p in local["points"]]
    assert [p["final_val_loss"] for p in on_ray["points"]] == [
        p["final_val_loss"] for p in local["points"]]
