"""Seeds as many as the question needs: an anytime-valid test of each point's paired difference
against its baseline, so seeds can be added until it is decided without inflating the error.

The test is the Bayes factor of the one-sample t-test on the paired differences d_i (point
minus baseline, seed by seed) with a normal prior of variance ``g`` on the standardised effect
delta = mu / sigma and the right Haar prior 1/sigma on the scale (Rouder et al. 2009, eq. 11
at a fixed g):

    BF(t, n) = (1 + n g)^(-1/2) * ((1 + t^2 / (nu (1 + n g))) / (1 + t^2 / nu))^(-(nu + 1) / 2)

with t the usual t statistic and nu = n - 1. Under "no difference" (delta = 0), whatever sigma,
this sequence of Bayes factors is a test martingale for the data's scale-invariant filtration
(Pérez-Ortiz, Lardy, de Heide and Grünwald 2024, "E-statistics, group invariance and anytime
valid testing", Annals of Statistics 52(4)): by Ville's inequality the chance that it ever
reaches 1/alpha is at most alpha, at whatever look one stops. So a point is decided
"differs" when BF >= 1/alpha, at any number of seeds from ``min`` to ``max``. Stopping early
for the other answer (BF <= ``FUTILITY``: the data favour no difference) only ever removes
rejections, so it keeps the error rate too. Pure numpy (vectorised over simulated sweeps).
"""

import math

from .stats import headline  # what the report compares: loss, or a task's accuracy

ALPHA = 0.05
PRIOR_VARIANCE = 1.0  # g: the standardised effects a difference is expected to have, ~N(0, 1)
FUTILITY = 1.0 / 3.0  # BF at or below this: the seeds favour no difference 3 to 1
DIFFERS, NO_DIFFERENCE, MAX_REACHED, UNDECIDED, BASELINE = (
    "differs", "no difference", "max reached", "undecided", "baseline")
REASONS = {
    DIFFERS: "decided: differs (Bayes factor >= 1/alpha = {bound:g})",
    NO_DIFFERENCE: f"decided: no difference (Bayes factor <= {FUTILITY:.3g})",
    MAX_REACHED: "max reached, undecided",
    UNDECIDED: "undecided: more seeds to come",
    BASELINE: "baseline: as many seeds as the points compared with it",
}


def bayes_factor(n, mean, sd, g=PRIOR_VARIANCE):
    """The Bayes factor for a difference (numpy arrays or numbers): ``n`` paired differences
    with this ``mean`` and sample ``sd``. n < 2 gives 1 (no evidence either way); sd 0 with a
    mean that is not, infinity."""
    import numpy as np

    n, mean, sd = (np.asarray(v, dtype=float) for v in (n, mean, sd))
    nu = np.maximum(n - 1.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_squared = np.where(sd > 0, n * mean ** 2 / np.where(sd > 0, sd, 1.0) ** 2,
                             np.where(mean != 0, np.inf, 0.0))
        log_bf = -0.5 * np.log1p(n * g) - (nu + 1) / 2 * (
            np.log1p(t_squared / (nu * (1 + n * g))) - np.log1p(t_squared / nu))
        log_bf = np.where(np.isinf(t_squared), np.inf, log_bf)
    value = np.where(n >= 2, np.exp(log_bf), 1.0)
    return float(value) if value.ndim == 0 else value


def decide(differences, alpha=ALPHA):
    """(verdict, Bayes factor) of the paired differences so far: DIFFERS, NO_DIFFERENCE or
    UNDECIDED."""
    n = len(differences)
    if n < 2:
        return UNDECIDED, 1.0
    mean = math.fsum(differences) / n
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in differences) / (n - 1))
    bf = bayes_factor(n, mean, sd)
    if bf >= 1.0 / alpha:
        return DIFFERS, bf
    if bf <= FUTILITY:
        return NO_DIFFERENCE, bf
    return UNDECIDED, bf


def simulate(differences, min_seeds, alpha=ALPHA):
    """Run the procedure on simulated sweeps: ``differences`` (sweeps x max seeds), looking at
    n = min_seeds .. max. Returns (rejected, seeds used, decided) per sweep (numpy arrays)."""
    import numpy as np

    sims, max_seeds = differences.shape
    n = np.arange(1, max_seeds + 1, dtype=float)
    total = np.cumsum(differences, axis=1)
    squares = np.cumsum(differences ** 2, axis=1)
    mean = total / n
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(np.maximum(squares - n * mean ** 2, 0.0) / np.maximum(n - 1, 1))
    bf = bayes_factor(n, mean, sd)
    looks = n >= min_seeds
    differs, futile = looks & (bf >= 1.0 / alpha), looks & (bf <= FUTILITY)
    stop = differs | futile
    stop[:, -1] = True  # at max, whatever the verdict
    first = np.argmax(stop, axis=1)
    rows = np.arange(sims)
    return differs[rows, first], first + 1, (differs | futile)[rows, first]


def schedule(plan, finals, min_seeds, max_seeds, alpha=ALPHA):
    """How many seeds each point needs now (its first n in the plan's seed order), why, and its
    Bayes factor: ``{point index: {"seeds", "verdict", "bayes_factor"}}``.

    ``finals`` maps a point's index to {seed: state, loss or None}: ``{seed: (state, loss)}``.
    A point looks at n = min_seeds, min_seeds + 1, ... while its first n seeds and its
    baseline's are all finished, and stops at the first decided look or at max_seeds; its
    baseline runs as many seeds as the most any point compared with it needs. Read from the
    store alone, so a restarted driver picks up where the last one stopped.
    """
    seeds = list(plan.sweep.seeds)[:max_seeds]
    out = {}
    for point in plan.points:
        base = plan.baselines[point.index]
        if base == point.index:
            continue
        mine, theirs = finals.get(point.index, {}), finals.get(base, {})
        n = min_seeds
        while True:
            chosen = seeds[:n]
            finished = all(s in mine and s in theirs for s in chosen)
            differences = [mine[s][1] - theirs[s][1] for s in chosen
                           if finished and mine[s][0] == theirs[s][0] == "done"]
            verdict, bf = decide(differences, alpha) if finished else (UNDECIDED, None)
            if not finished or verdict != UNDECIDED or n >= len(seeds):
                if finished and verdict == UNDECIDED:
                    verdict = MAX_REACHED
                break
            n += 1
        out[point.index] = {"seeds": n, "verdict": verdict, "bayes_factor": bf}
    for point in plan.points:
        if plan.baselines[point.index] == point.index:
            needs = [entry["seeds"] for i, entry in out.items() if plan.baselines[i] == point.index]
            out[point.index] = {"seeds": max(needs, default=min_seeds), "verdict": BASELINE,
                                "bayes_factor": None}
    return out


def reason(verdict, alpha=ALPHA):
    return REASONS[verdict].format(bound=1.0 / alpha)


def active_plan(plan, store):
    """``plan`` (as :func:`explorer.sweep.make_plan` made it) with only the runs its adaptive
    seeds want now, by what ``store`` holds, and the schedule attached; a plan without adaptive
    seeds (or already made active) as it is."""
    from dataclasses import replace


    adaptive = plan.sweep.adaptive
    if not adaptive or plan.schedule is not None:
        return plan
    metric = headline(plan)
    rows = store.rows([run.key for run in plan.runs], ("state", "seed", "metrics"))
    finals = {}
    for run in plan.runs:
        row = rows.get(run.key)
        if row is not None and row["state"] in ("done", "failed"):
            value = row["metrics"][metric] if row["state"] == "done" else None
            finals.setdefault(run.point.index, {})[run.seed] = (row["state"], value)
    wanted = schedule(plan, finals, adaptive["min"], adaptive["max"])
    seeds = list(plan.sweep.seeds)
    for entry in wanted.values():
        entry["reason"] = reason(entry["verdict"])
    runs = [run for run in plan.runs
            if seeds.index(run.seed) < wanted[run.point.index]["seeds"]]
    return replace(plan, runs=runs, schedule=wanted, _runs_by_point={})
