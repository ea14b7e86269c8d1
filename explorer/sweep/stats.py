"""Statistics over seeds: mean, standard deviation, Student's t confidence intervals, and the
paired difference against a baseline. Standard library only (no scipy at run time).

The t quantile inverts the t distribution's CDF by bisection; the CDF comes from the
regularized incomplete beta function, evaluated by its continued fraction (DLMF 8.17.22):

    P(T <= t) = 1 - I_x(df/2, 1/2) / 2  for t >= 0, with x = df / (df + t^2)
"""

import functools
import math

CONFIDENCE = 0.95
_TINY = 1e-300


def _beta_continued_fraction(a, b, x):
    """The continued fraction of I_x(a, b), evaluated with the modified Lentz method."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    value = d
    for m in range(1, 1000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),  # even step
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # odd
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            value *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return value


def incomplete_beta(a, b, x):
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t, df):
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


@functools.lru_cache(maxsize=None)
def t_quantile(p, df):
    """The t with P(T <= t) = p (0 < p < 1), by bisection on :func:`t_cdf`. Cached: a report
    asks for the same few (p, df) once per point, and each costs ~50 CDF evaluations."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = 0.5 * (low + high)
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * max(1.0, high):
            break
    return 0.5 * (low + high)


def summarize(values, confidence=CONFIDENCE):
    """n, mean, sample standard deviation and the t confidence interval of the mean.

    With one value the spread is unknown: sd and the interval are None.
    """
    values = list(values)
    n = len(values)
    if not n:
        return {"n": 0, "mean": None, "sd": None, "ci": None, "half_width": None}
    mean = math.fsum(values) / n
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "ci": None, "half_width": None}
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "ci": [mean - half, mean + half],
            "half_width": half}


def paired_difference(values, baseline, confidence=CONFIDENCE):
    """The mean of ``values[seed] - baseline[seed]`` over the seeds both have, with its t
    interval; ``significant`` when the interval excludes zero."""
    seeds = sorted(set(values) & set(baseline))
    result = summarize([values[s] - baseline[s] for s in seeds], confidence)
    ci = result["ci"]
    result["seeds"] = seeds
    result["significant"] = bool(ci and (ci[0] > 0 or ci[1] < 0))
    return result
