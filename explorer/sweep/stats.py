"""Statistics over seeds: mean, standard deviation, Student's t confidence intervals, and the
paired difference against a baseline. The t quantiles come from scipy.stats (imported when
first needed, so that `explorer --help` does not pay for it).
"""

import functools
import math

CONFIDENCE = 0.95
METRIC = "final_val_loss"  # what a sweep compares: each run's validation loss at its last step
# A task sweep's headline is the task's score (explorer.training.tasks): higher is better.
TASK_METRIC = "final_accuracy"


def headline(plan):
    """The metric a sweep's points are compared by: the task's accuracy when every point
    trains a task, else the final validation loss."""
    tasks = [point.train.task for point in plan.points]
    return TASK_METRIC if tasks and all(tasks) else METRIC


@functools.lru_cache(maxsize=None)
def t_quantile(p, df):
    """The t with P(T <= t) = p (0 < p < 1) for Student's t with ``df`` degrees of freedom.
    Cached: a report asks for the same few (p, df) once per point."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    from scipy.stats import t as student_t

    return float(student_t.ppf(p, df))


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
