"""The sweep's statistics: t quantiles (from scipy) against the printed tables, and the
intervals and paired differences against scipy.stats' own t-test functions."""

import math
import random

import pytest
import scipy.stats as scipy_stats

from explorer.sweep.stats import paired_difference, summarize, t_quantile


@pytest.mark.parametrize("p, df, expected", [
    (0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 4, 2.776), (0.975, 9, 2.262),
    (0.975, 19, 2.093), (0.975, 29, 2.045), (0.975, 30, 2.042), (0.95, 4, 2.132),
    (0.995, 4, 4.604), (0.995, 29, 2.756), (0.9, 1, 3.078)])
def test_the_famous_quantiles(p, df, expected):  # the tables every statistics book prints
    assert round(t_quantile(p, df), 3) == expected
    assert round(t_quantile(1.0 - p, df), 3) == -expected  # the distribution is symmetric


def test_t_quantile_limits():
    assert t_quantile(0.5, 7) == 0.0
    assert t_quantile(0.975, 10**6) == pytest.approx(1.959964, abs=1e-5)  # the normal's
    assert type(t_quantile(0.975, 3)) is float  # a plain float, not a numpy scalar
    for p in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="p must be in"):
            t_quantile(p, 3)


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_summary_equals_scipy(n):
    rng = random.Random(n)
    values = [rng.gauss(2.5, 0.1) for _ in range(n)]
    s = summarize(values)
    assert s["n"] == n
    assert s["mean"] == pytest.approx(sum(values) / n, rel=1e-15)
    assert s["sd"] == pytest.approx(scipy_stats.tstd(values), rel=1e-12)
    low, high = scipy_stats.t.interval(0.95, n - 1, loc=s["mean"], scale=scipy_stats.sem(values))
    assert s["ci"] == pytest.approx([low, high], rel=1e-12)


def test_a_summary_computed_by_hand():
    s = summarize([1.0, 2.0, 3.0])  # mean 2, sd 1, half width t(0.975, 2) / sqrt(3)
    assert (s["n"], s["mean"], s["sd"]) == (3, 2.0, 1.0)
    assert s["half_width"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert s["ci"] == pytest.approx([2.0 - 2.484138, 2.0 + 2.484138], rel=1e-6)


def test_one_value_has_no_spread():
    assert summarize([2.0]) == {"n": 1, "mean": 2.0, "sd": None, "ci": None, "half_width": None}
    assert summarize([])["mean"] is None


def test_paired_difference_equals_scipy_ttest_rel():
    rng = random.Random(7)
    baseline = {seed: rng.gauss(2.5, 0.05) for seed in range(1, 7)}
    values = {seed: baseline.get(seed, 2.5) - 0.03 + rng.gauss(0, 0.01) for seed in range(2, 9)}
    d = paired_difference(values, baseline)
    seeds = [2, 3, 4, 5, 6]  # only the seeds both have
    assert d["seeds"] == seeds and d["n"] == 5
    test = scipy_stats.ttest_rel([values[s] for s in seeds], [baseline[s] for s in seeds])
    ci = test.confidence_interval(0.95)
    assert d["ci"] == pytest.approx([ci.low, ci.high], rel=1e-10)
    assert d["mean"] == pytest.approx(sum(values[s] - baseline[s] for s in seeds) / 5)
    assert d["significant"] is True  # -0.03 with noise 0.01: the interval excludes 0
    same = paired_difference({1: 1.0, 2: 2.0, 3: 3.1}, {1: 1.05, 2: 1.9, 3: 3.1})
    assert same["significant"] is False and same["ci"][0] < 0 < same["ci"][1]
    assert math.isclose(same["mean"], (-0.05 + 0.1 + 0.0) / 3)
