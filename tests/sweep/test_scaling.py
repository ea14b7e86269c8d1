"""Power-law fits of loss against size: recovery of a known law, agreement with scipy's
curve_fit, bootstrap coverage, crossings computed by hand, and bad input."""

import numpy as np
import pytest
from scipy.optimize import curve_fit

from explorer.errors import ExplorerError
from explorer.sweep.scaling import (PowerLawFit, bootstrap, crossing, fit_power_law,
                                    paired_difference_at)

E, A, ALPHA = 1.7, 400.0, 0.34
SIZES = np.logspace(5, 8, 6)  # 1e5 .. 1e8


def law(x, E=E, A=A, alpha=ALPHA):
    return E + A * np.power(x, -alpha)


def seeded_losses(noise, seeds=5, rng_seed=1, **params):
    rng = np.random.default_rng(rng_seed)
    return {float(s): list(law(s, **params) + rng.normal(0.0, noise, seeds)) for s in SIZES}


def test_a_fit_recovers_the_law_it_was_drawn_from():
    fit = fit_power_law(SIZES, law(SIZES))
    assert (fit.E, fit.A, fit.alpha) == pytest.approx((E, A, ALPHA), rel=1e-3)
    assert fit.objective < 1e-20
    assert fit.predict(1e10) == pytest.approx(1.7 + 400 * 1e10 ** -0.34, rel=1e-6)
    assert fit.predict(SIZES) == pytest.approx(law(SIZES), rel=1e-9)


def test_with_a_squared_loss_on_L_the_fit_is_curve_fits():
    rng = np.random.default_rng(2)
    noisy = law(SIZES) + rng.normal(0.0, 0.01, len(SIZES))
    # Residuals here are ~0.01: with delta 1e3 the Huber loss is the squared loss throughout.
    fit = fit_power_law(SIZES, noisy, huber_delta=1e3, residuals="linear")
    reference, _ = curve_fit(law, SIZES, noisy, p0=(1.5, 300.0, 0.3), maxfev=100_000,
                             xtol=1e-14, ftol=1e-14)
    assert (fit.E, fit.A, fit.alpha) == pytest.approx(tuple(reference), rel=1e-4)
    assert abs(fit.E - E) > 1e-3  # the noise moved the optimum: the two agree on more than E


def test_the_huber_loss_keeps_one_bad_point_from_pulling_the_curve():
    losses = law(SIZES)
    losses[2] += 0.5  # one diverged run
    robust = fit_power_law(SIZES, losses)
    squared = fit_power_law(SIZES, losses, huber_delta=1e3)
    assert robust.predict(1e9) == pytest.approx(law(1e9), rel=2e-2)
    assert abs(squared.predict(1e9) - law(1e9)) > 2 * abs(robust.predict(1e9) - law(1e9))


def test_the_bootstrap_interval_covers_the_true_values():
    result = bootstrap(seeded_losses(noise=0.005), target=1e9, resamples=200, seed=3)
    assert result.resamples == 200
    truth = {"E": E, "A": A, "alpha": ALPHA, "prediction": law(1e9)}
    for name, value in truth.items():
        interval = result.intervals[name]
        assert value in interval, (name, value, interval)
    assert result.prediction == pytest.approx(result.fit.predict(1e9))
    assert result.intervals["alpha"].high - result.intervals["alpha"].low < 0.01  # informative
    again = bootstrap(seeded_losses(noise=0.005), target=1e9, resamples=200, seed=3)
    assert again.intervals == result.intervals  # the same seed, the same intervals


def test_a_crossing_computed_by_hand():
    # 2 + 100 x^-0.5 = 1 + 1100 x^-0.5  <=>  x^-0.5 = 1/1000  <=>  x = 1e6
    a = PowerLawFit(E=2.0, A=100.0, alpha=0.5, objective=0.0)
    b = PowerLawFit(E=1.0, A=1100.0, alpha=0.5, objective=0.0)
    assert crossing(a, b) == pytest.approx(1e6, rel=1e-10)
    assert crossing(b, a) == pytest.approx(1e6, rel=1e-10)
    assert crossing(a, b, within=(1e7, 1e12)) is None  # they cross, but not there
    parallel = PowerLawFit(E=2.5, A=100.0, alpha=0.5, objective=0.0)
    assert crossing(a, parallel) is None  # never


def test_a_paired_difference_at_a_target_size():
    # b is a's law shifted down by 0.05: the seeds' shared part cancels in the difference.
    losses_a = seeded_losses(noise=0.02, rng_seed=4)
    losses_b = {size: [loss - 0.05 for loss in seeds] for size, seeds in losses_a.items()}
    result = paired_difference_at(losses_a, losses_b, target=1e9, resamples=100, seed=5)
    assert result.difference == pytest.approx(0.05, abs=5e-4)  # two fits, each to its noise
    assert 0.05 in result.interval and result.significant
    same = paired_difference_at(losses_a, losses_a, target=1e9, resamples=50)
    assert same.difference == 0.0 and not same.significant


@pytest.mark.parametrize("x, loss, message", [
    ([1e5, 1e6], [3.0, 2.5],
     "power-law fit: 2 distinct sizes; a fit of E, A and alpha needs at least 3"),
    ([1e5, 1e5, 1e6], [3.0, 3.0, 2.5], "2 distinct sizes"),
    ([1e5, 0.0, 1e7], [3.0, 2.5, 2.2], "size 0.0 is not a positive finite number"),
    ([1e5, 1e6, 1e7], [3.0, -2.5, 2.2], "loss -2.5 is not a positive finite number"),
    ([1e5, 1e6, 1e7], [3.0, float("nan"), 2.2], "loss nan is not a positive finite number"),
    ([1e5, 1e6, 1e7], [3.0, 2.5], "3 sizes but 2 losses"),
])
def test_bad_input_is_one_line(x, loss, message):
    with pytest.raises(ExplorerError, match=message) as raised:
        fit_power_law(x, loss)
    assert "\n" not in str(raised.value)


def test_bad_bootstrap_input_is_one_line():
    with pytest.raises(ExplorerError, match="size 1000000.0 has no losses"):
        bootstrap({1e5: [3.0], 1e6: [], 1e7: [2.2]}, target=1e9)
    with pytest.raises(ExplorerError, match="as many sizes and the same seeds"):
        paired_difference_at({1e5: [3.0], 1e6: [2.5], 1e7: [2.2]},
                             {1e5: [3.0], 1e6: [2.5], 1e7: [2.2], 1e8: [2.1]}, target=1e9)
    with pytest.raises(ExplorerError, match=r"seeds per size \[1, 2, 1\] vs \[1, 1, 1\]"):
        paired_difference_at({1e5: [3.0], 1e6: [2.5, 2.4], 1e7: [2.2]},
                             {1e5: [3.0], 1e6: [2.5], 1e8: [2.2]}, target=1e9)
    with pytest.raises(ExplorerError, match="give 0 < low < high"):
        crossing(PowerLawFit(1.0, 1.0, 0.5, 0.0), PowerLawFit(1.0, 2.0, 0.5, 0.0), within=(5, 1))
