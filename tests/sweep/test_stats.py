"""The sweep's statistics, computed without scipy, checked against scipy.stats."""

import math
import random

import pytest

from explorer.sweep.stats import (incomplete_beta, paired_difference, summarize, t_cdf,
                                  t_quantile)

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is in the test extra")
special = pytest.importorskip("scipy.special")


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 7, 9, 19, 29, 60, 1000])
@pytest.mark.parametrize("p", [0.5, 0.6, 0.9, 0.95, 0.975, 0.995, 0.9995, 0.025])
def test_t_quantile_equals_scipy(p, df):
    assert t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-10, abs=1e-12)


def test_t_cdf_and_incomplete_beta_equal_scipy():
    for df in (1, 3, 10, 50):
        for t in (-30.0, -2.0, -0.1, 0.0, 0.7, 2.5, 12.0):
            assert t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-13)
    for a in (0.5, 1.0, 2.5, 10.0, 150.0):
        for b in (0.5, 1.0, 3.0, 40.0):
            for x in (0.0, 1e-6, 0.1, 0.5, 0.93, 1.0):
                assert incomplete_beta(a, b, x) == pytest.approx(special.betainc(a, b, x),
                                                                 abs=1e-13)


def test_the_famous_quantiles():  # the tables every statistics book prints
    assert round(t_quantile(0.975, 1), 3) == 12.706
    assert round(t_quantile(0.975, 4), 3) == 2.776
    assert round(t_quantile(0.975, 30), 3) == 2.042


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
