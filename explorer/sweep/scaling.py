"""Power-law fits of loss against size, L(x) = E + A * x**-alpha, and their uncertainty.

The fit follows Hoffmann et al. 2022 ("Chinchilla"), approach 3: E and A are parameterised
in log space (e = log E, a = log A, so both stay positive and their scales do not matter), the
residuals are taken on log L, a Huber loss keeps one bad point from pulling the curve, and the
optimiser starts from a grid of starting points, keeping the best optimum (the objective has
several local ones). Uncertainty comes from resampling seeds: each size's seeds are drawn with
replacement, the per-size means refitted, and the 2.5th and 97.5th percentiles read off.

Pure functions, no I/O; scipy and numpy are imported where they are used, so importing this
module costs nothing at start-up. x is whatever a size ladder steps through (parameters,
tokens, FLOPs); it only has to be positive.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from explorer.errors import ExplorerError

CONFIDENCE = 0.95
HUBER_DELTA = 1e-3  # Hoffmann et al.'s: residuals on log L above 0.1% count linearly
# The default starting points (E, A, alpha): the grid spans losses of a fraction of a nat to
# several, prefactors from 1 to 1e8 and exponents from shallow to steep.
DEFAULT_STARTS = tuple(itertools.product((0.5, 1.0, 2.0, 4.0), (1.0, 1e2, 1e4, 1e6, 1e8),
                                         (0.1, 0.3, 0.6, 1.0)))


@dataclass(frozen=True)
class PowerLawFit:
    """L(x) = E + A * x**-alpha: E the irreducible loss, A the prefactor, alpha the exponent."""

    E: float
    A: float
    alpha: float
    objective: float  # the (Huber) loss the optimiser reached: 0.5 * sum of rho(residual**2)

    def predict(self, x):
        """The fitted loss at size ``x`` (a number, or an array of sizes)."""
        import numpy as np

        value = self.E + self.A * np.power(np.asarray(x, dtype=float), -self.alpha)
        return float(value) if np.ndim(value) == 0 else value


@dataclass(frozen=True)
class Interval:
    """A bootstrap percentile interval: ``low`` and ``high`` bound ``confidence`` of the draws."""

    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Bootstrap:
    """A fit to the per-size mean losses with bootstrap intervals over seeds."""

    fit: PowerLawFit
    target: float  # the size the prediction is for
    prediction: float  # fit.predict(target)
    intervals: dict[str, Interval]  # "E", "A", "alpha" and "prediction"
    resamples: int  # the resamples whose fit converged (those that did not are left out)
    band: tuple[Interval, ...] = ()  # the predicted loss's interval at each of ``band_at``


@dataclass(frozen=True)
class PairedDifference:
    """Variant a's predicted loss minus variant b's at ``target``, with its bootstrap interval;
    ``significant`` when the interval excludes zero."""

    target: float
    difference: float
    interval: Interval
    significant: bool
    resamples: int
    # Where the two fits cross in ``crossing_within`` (None: they do not), the interval over
    # the resamples that cross there, and the share of resamples that do
    crossing: float | None = None
    crossing_interval: Interval | None = None
    crossing_share: float = 0.0


def _checked(x: Sequence[float], loss: Sequence[float]):
    """x and loss as float arrays, or an ExplorerError naming what is wrong."""
    import numpy as np

    if len(x) != len(loss):
        raise ExplorerError(f"power-law fit: {len(x)} sizes but {len(loss)} losses; "
                            "give one loss per size")
    sizes, losses = np.asarray(x, dtype=float), np.asarray(loss, dtype=float)
    if len(set(sizes.tolist())) < 3:
        raise ExplorerError(f"power-law fit: {len(set(sizes.tolist()))} distinct sizes; "
                            "a fit of E, A and alpha needs at least 3")
    for name, values in (("size", sizes), ("loss", losses)):
        bad = values[~(np.isfinite(values) & (values > 0))]
        if bad.size:
            raise ExplorerError(f"power-law fit: {name} {float(bad[0])!r} is not a positive "
                                f"finite number; every {name} must be")
    return sizes, losses


def _residuals(params, log_x, target, residuals):
    """log L_fit - log L (``residuals="log"``) or L_fit - L, for params (log E, log A, alpha)."""
    import numpy as np

    log_fit = np.logaddexp(params[0], params[1] - params[2] * log_x)
    return log_fit - target if residuals == "log" else np.exp(log_fit) - target


def _jacobian(params, log_x, target, residuals):
    """d residual / d (log E, log A, alpha): exact, where finite differences would cost three
    more evaluations per step and some precision."""
    import numpy as np

    power_term = params[1] - params[2] * log_x  # log(A * x**-alpha)
    log_fit = np.logaddexp(params[0], power_term)
    share_of_E = np.exp(params[0] - log_fit)  # E / L_fit
    share_of_power = np.exp(power_term - log_fit)  # A x**-alpha / L_fit
    jacobian = np.stack([share_of_E, share_of_power, -share_of_power * log_x], axis=1)
    return jacobian if residuals == "log" else jacobian * np.exp(log_fit)[:, None]


def _objective(params, log_x, target, residuals, huber_delta):
    """least_squares' cost (0.5 * delta**2 * sum of rho((r / delta)**2)) at params."""
    import numpy as np

    scaled = (_residuals(params, log_x, target, residuals) / huber_delta) ** 2
    rho = np.where(scaled <= 1.0, scaled, 2.0 * np.sqrt(scaled) - 1.0)
    total = 0.5 * huber_delta ** 2 * float(np.sum(rho))
    return total if math.isfinite(total) else math.inf  # sortable, and never the best


def fit_power_law(x: Sequence[float], loss: Sequence[float],
                  starts: Sequence[tuple[float, float, float]] = DEFAULT_STARTS,
                  huber_delta: float = HUBER_DELTA,
                  residuals: Literal["log", "linear"] = "log", refine: int = 8) -> PowerLawFit:
    """Fit L = E + A * x**-alpha to ``loss`` at sizes ``x``: the best of the least-squares
    optimisations from the ``refine`` points of ``starts`` (each an (E, A, alpha)) where the
    objective is lowest.

    ``residuals="log"`` (the default, Hoffmann et al.'s) compares log L; ``"linear"`` compares
    L itself. The loss on the residuals is Huber with ``huber_delta``: squared below it,
    linear above. Raises ExplorerError on fewer than 3 distinct sizes, a non-positive or
    non-finite size or loss, or when no start converges.
    """
    import numpy as np
    from scipy.optimize import least_squares

    sizes, losses = _checked(x, loss)
    if residuals not in ("log", "linear"):
        raise ExplorerError(f"power-law fit: residuals {residuals!r}; valid: 'log', 'linear'")
    log_x = np.log(sizes)
    target = np.log(losses) if residuals == "log" else losses
    # Optimise from the ``refine`` starts with the lowest objective: most of a wide grid lies
    # far from any optimum, and optimising from there costs the most and wins the least.
    with np.errstate(over="ignore", invalid="ignore"):
        candidates = sorted(([math.log(E), math.log(A), alpha] for E, A, alpha in starts),
                            key=lambda p: _objective(p, log_x, target, residuals, huber_delta))
    best = None
    for start in candidates[:refine]:
        with np.errstate(over="ignore", invalid="ignore"):
            try:
                result = least_squares(_residuals, start, jac=_jacobian,
                                       args=(log_x, target, residuals), loss="huber",
                                       f_scale=huber_delta, xtol=1e-12, ftol=1e-12, gtol=1e-12)
            except ValueError:  # a start where the residuals are not finite
                continue
        if np.all(np.isfinite(result.x)) and (best is None or result.cost < best.cost):
            best = result
    if best is None:
        raise ExplorerError(f"power-law fit: no start of {len(starts)} converged on "
                            f"{len(sizes)} sizes")
    log_E, log_A, alpha = best.x
    return PowerLawFit(E=math.exp(log_E), A=math.exp(log_A), alpha=float(alpha),
                       objective=float(best.cost))


def _per_size(losses_by_size: Mapping[float, Sequence[float]]):
    sizes = sorted(losses_by_size)
    for size in sizes:
        if not len(losses_by_size[size]):
            raise ExplorerError(f"power-law fit: size {size!r} has no losses; give at least "
                                "one seed's loss per size")
    return sizes, [list(map(float, losses_by_size[size])) for size in sizes]


def _percentile_interval(draws, confidence):
    import numpy as np

    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return Interval(float(low), float(high))


def _resampled_fits(sizes_list, seed_losses_list, start, resamples, rng, huber_delta):
    """Yield, per resample, one fit per variant in ``seed_losses_list`` (at its sizes in
    ``sizes_list``); each size's seeds are drawn with replacement, the same draw for every
    variant at the same rank of size (so their seeds stay paired)."""
    import numpy as np

    for _ in range(resamples):
        picks = [rng.integers(0, len(seeds), len(seeds)) for seeds in seed_losses_list[0]]
        try:
            yield [fit_power_law(sizes, [float(np.mean(np.asarray(seeds)[pick]))
                                         for seeds, pick in zip(variant, picks)],
                                 starts=[start_of], huber_delta=huber_delta)
                   for sizes, variant, start_of in zip(sizes_list, seed_losses_list, start)]
        except ExplorerError:  # this resample's fit did not converge: leave it out
            continue


def bootstrap(losses_by_size: Mapping[float, Sequence[float]], target: float,
              resamples: int = 500, seed: int = 0, confidence: float = CONFIDENCE,
              starts: Sequence[tuple[float, float, float]] = DEFAULT_STARTS,
              huber_delta: float = HUBER_DELTA, band_at: Sequence[float] = ()) -> Bootstrap:
    """Fit the per-size mean losses of ``losses_by_size`` (size -> the losses of its seeds),
    and give ``confidence`` percentile intervals of E, A, alpha and of the predicted loss at
    ``target`` (and at each size of ``band_at``) over ``resamples`` resamplings of each size's
    seeds (numpy generator ``seed``: the same call gives the same intervals). Each resample's
    fit starts from the full fit."""
    import numpy as np

    sizes, seed_losses = _per_size(losses_by_size)
    fit = fit_power_law(sizes, [sum(s) / len(s) for s in seed_losses], starts, huber_delta)
    start = (fit.E, fit.A, fit.alpha)
    draws = {"E": [], "A": [], "alpha": [], "prediction": []}
    curves = []
    for (resampled,) in _resampled_fits([sizes], [seed_losses], [start], resamples,
                                        np.random.default_rng(seed), huber_delta):
        for name, value in (("E", resampled.E), ("A", resampled.A), ("alpha", resampled.alpha),
                            ("prediction", resampled.predict(target))):
            draws[name].append(value)
        if len(band_at):
            curves.append(resampled.predict(np.asarray(band_at, dtype=float)))
    if not draws["E"]:
        raise ExplorerError(f"power-law bootstrap: none of {resamples} resamples converged")
    band = tuple(_percentile_interval(column, confidence)
                 for column in np.asarray(curves).T) if curves else ()
    return Bootstrap(fit=fit, target=float(target), prediction=fit.predict(target),
                     intervals={name: _percentile_interval(values, confidence)
                                for name, values in draws.items()},
                     resamples=len(draws["E"]), band=band)


def paired_difference_at(losses_a: Mapping[float, Sequence[float]],
                         losses_b: Mapping[float, Sequence[float]], target: float,
                         resamples: int = 500, seed: int = 0, confidence: float = CONFIDENCE,
                         starts: Sequence[tuple[float, float, float]] = DEFAULT_STARTS,
                         huber_delta: float = HUBER_DELTA,
                         crossing_within: tuple[float, float] | None = None) -> PairedDifference:
    """Variant a's fitted loss minus variant b's at ``target``, with a bootstrap interval; with
    ``crossing_within``, also where the two fits cross in that range, with its interval.

    Both give as many sizes (a ladder's rungs: the two variants' sizes may differ, say their
    parameter counts), paired by rank, each size's seeds at position i being the same seed in
    both (same data order and initialisation seed): a resample draws the same seeds for both,
    so what the seeds share cancels in the difference.
    """
    import numpy as np

    sizes_a, seeds_a = _per_size(losses_a)
    sizes_b, seeds_b = _per_size(losses_b)
    if [len(s) for s in seeds_a] != [len(s) for s in seeds_b]:
        raise ExplorerError("power-law paired difference: the two variants must have as many "
                            "sizes and the same seeds at each size (paired by rank); seeds per "
                            f"size {[len(s) for s in seeds_a]} vs {[len(s) for s in seeds_b]}")
    fits = [fit_power_law(sizes, [sum(s) / len(s) for s in variant], starts, huber_delta)
            for sizes, variant in ((sizes_a, seeds_a), (sizes_b, seeds_b))]
    draws, crossings = [], []
    for a, b in _resampled_fits([sizes_a, sizes_b], [seeds_a, seeds_b],
                                [(f.E, f.A, f.alpha) for f in fits], resamples,
                                np.random.default_rng(seed), huber_delta):
        draws.append(a.predict(target) - b.predict(target))
        if crossing_within:
            crossings.append(crossing(a, b, crossing_within))
    if not draws:
        raise ExplorerError(f"power-law paired difference: none of {resamples} resamples "
                            "converged")
    interval = _percentile_interval(draws, confidence)
    crossed = [x for x in crossings if x is not None]
    return PairedDifference(
        target=float(target), difference=fits[0].predict(target) - fits[1].predict(target),
        interval=interval, significant=0.0 not in interval, resamples=len(draws),
        crossing=crossing(*fits, crossing_within) if crossing_within else None,
        crossing_interval=_percentile_interval(crossed, confidence) if crossed else None,
        crossing_share=len(crossed) / len(draws))


def crossing(fit_a: PowerLawFit, fit_b: PowerLawFit,
             within: tuple[float, float] = (1e3, 1e15)) -> float | None:
    """The smallest size in ``within`` where the two fitted curves cross (their predicted
    losses are equal), or None if they do not cross there. Found on a log grid of 400 points,
    then refined by Brent's method."""
    import numpy as np
    from scipy.optimize import brentq

    low, high = within
    if not 0 < low < high:
        raise ExplorerError(f"crossing: range {within!r}; give 0 < low < high")

    def gap(log_x):
        return fit_a.predict(math.exp(log_x)) - fit_b.predict(math.exp(log_x))

    grid = np.linspace(math.log(low), math.log(high), 400)
    gaps = (fit_a.predict(np.exp(grid)) - fit_b.predict(np.exp(grid))).tolist()  # one pass
    for left, right, gap_left, gap_right in zip(grid, grid[1:], gaps, gaps[1:]):
        if gap_left == 0.0:
            return float(math.exp(left))
        if gap_left * gap_right < 0:
            return float(math.exp(brentq(gap, left, right, xtol=1e-14, rtol=1e-14)))
    return float(math.exp(grid[-1])) if gaps[-1] == 0.0 else None
