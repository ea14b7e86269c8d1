"""The size-ladder part of a sweep's report (a sweep file with ``scale:``): per variant (a grid
point, all rungs) a fit of final loss against size, L = E + A * x**-alpha
(:mod:`.scaling`: Huber on log L from a grid of starts; intervals by resampling seeds), the
loss it predicts at ``extrapolate_to``, the paired difference against the baseline variant
there and where the two curves cross; text, JSON (``report["ladder"]``) and a chart.
"""

import json
import math

from . import stats
from .plan import point_label
from .stats import METRIC

RESAMPLES = 500
BAND_POINTS = 40  # sizes the chart's band is computed at, log-spaced up to extrapolate_to
CROSSING_REACH = 1e3  # look for crossings up to this many times the farthest size in view
X_NAMES = {"params": "non-embedding parameters", "flops": "training FLOPs"}


def _interval(interval):
    return [interval.low, interval.high] if interval else None


def _variants(plan, finals):
    """Variant key -> {"coords", "points": [(point, {seed: loss}), ...] in rung order}."""
    ladder = plan.sweep.scale.keys
    variants = {}
    for point in plan.points:
        coords = {k: v for k, v in point.coords.items() if k not in ladder}
        entry = variants.setdefault(json.dumps(coords, sort_keys=True),
                                    {"coords": coords, "points": []})
        entry["points"].append((point, finals[point.index]))
    return variants


def _fit(rungs, target, x_low):
    """The bootstrap fit of one variant's rungs, as plain data; or the reason there is none."""
    from ..errors import ExplorerError
    from .scaling import bootstrap

    done = {r["x"]: list(r["losses"].values()) for r in rungs if r["losses"]}
    if len(done) < 3:
        return None, f"{len(done)} of {len(rungs)} rungs have a finished run; a fit needs 3"
    band_x = _band_sizes(x_low, target)
    try:
        result = bootstrap(done, target, resamples=RESAMPLES, band_at=band_x)
    except ExplorerError as exc:
        return None, str(exc)
    fit = result.fit
    return {"E": fit.E, "A": fit.A, "alpha": fit.alpha, "objective": fit.objective,
            "intervals": {k: _interval(v) for k, v in result.intervals.items()},
            "prediction": result.prediction, "resamples": result.resamples,
            "band": {"x": band_x, "low": [b.low for b in result.band],
                     "high": [b.high for b in result.band]}}, None


def _band_sizes(low, high):
    step = (math.log(high) - math.log(low)) / (BAND_POINTS - 1)
    return [math.exp(math.log(low) + i * step) for i in range(BAND_POINTS)]


def _paired(rungs, base_rungs, target, reach):
    """Variant minus baseline at ``target`` over the seeds both have at each rung, and where
    the curves cross; None with the reason when a rung has no seed both finished."""
    from ..errors import ExplorerError
    from .scaling import paired_difference_at

    mine, theirs = {}, {}
    for rung, base in zip(rungs, base_rungs):
        seeds = sorted(set(rung["losses"]) & set(base["losses"]))
        if seeds:
            mine[rung["x"]] = [rung["losses"][s] for s in seeds]
            theirs[base["x"]] = [base["losses"][s] for s in seeds]
    if len(mine) < 3 or len(theirs) < 3:
        return None, "fewer than 3 rungs where both have a seed done"
    try:
        result = paired_difference_at(mine, theirs, target, resamples=RESAMPLES,
                                      crossing_within=reach)
    except ExplorerError as exc:
        return None, str(exc)
    return {"difference": result.difference, "interval": _interval(result.interval),
            "significant": result.significant, "resamples": result.resamples,
            "crossing": result.crossing, "crossing_interval": _interval(result.crossing_interval),
            "crossing_share": result.crossing_share, "crossing_searched": list(reach)}, None


def ladder_section(plan, finals):
    """The ladder's part of the report: ``finals`` maps each point's index to {seed: final
    validation loss} of its finished runs."""
    scale = plan.sweep.scale
    variants = _variants(plan, finals)
    sizes = [p.size[scale.x] for p in plan.points]
    low, high = min(sizes), max(max(sizes), scale.extrapolate_to)
    reach = (low, high * CROSSING_REACH)
    baseline_of = plan.baselines
    out = []
    for entry in variants.values():
        rungs = [{"label": point.label, "index": point.index,
                  "ladder": {k: point.coords[k] for k in scale.keys},
                  "x": point.size[scale.x], **point.size, "losses": losses,
                  METRIC: stats.summarize(losses.values())}
                 for point, losses in entry["points"]]
        fit, problem = _fit(rungs, scale.extrapolate_to, low)
        first = entry["points"][0][0]
        out.append({"label": point_label(entry["coords"]) if entry["coords"] else "all",
                    "config": entry["coords"], "rungs": rungs, "fit": fit, "fit_problem": problem,
                    "is_baseline": baseline_of[first.index] == first.index,
                    "baseline_index": baseline_of[first.index]})
    by_first_point = {v["rungs"][0]["index"]: v for v in out}
    for variant in out:
        base = by_first_point[variant.pop("baseline_index")]
        variant["baseline"] = base["label"]
        variant["difference"], variant["difference_problem"] = (None, None) if variant[
            "is_baseline"] else _paired(variant["rungs"], base["rungs"], scale.extrapolate_to,
                                        reach)
    for variant in out:
        for rung in variant["rungs"]:
            rung["losses"] = {str(seed): loss for seed, loss in rung["losses"].items()}
    return {"x": scale.x, "x_name": X_NAMES[scale.x], "extrapolate_to": scale.extrapolate_to,
            "ladder": {k: list(v) for k, v in scale.ladder.items()},
            "rules": {k: r.text for k, r in scale.rules.items()},
            "tokens_per_param": scale.tokens_per_param or None,
            "confidence": stats.CONFIDENCE, "resamples": RESAMPLES, "variants": out,
            "method": ("L = E + A * x^-alpha fitted to each rung's mean final loss: least "
                       "squares with a Huber loss (delta 1e-3) on log L from a grid of starts "
                       "(Hoffmann et al. 2022, approach 3); 95% intervals: percentiles over "
                       f"{RESAMPLES} resamplings of each rung's seeds (the same seeds for a "
                       "variant and its baseline, so the difference is paired)")}


# -- rendering -------------------------------------------------------------------------------

def _g(value, digits=4):
    return "-" if value is None else f"{value:.{digits}g}"


def _range(pair, digits=4):
    return "-" if not pair else f"[{pair[0]:.{digits}g}, {pair[1]:.{digits}g}]"


def ladder_table(ladder):
    """Header and rows (strings) of the per-variant fit table."""
    target = f"{ladder['extrapolate_to']:.3g}"
    header = ["variant", "rungs", "E", "A", "alpha", "alpha 95%", f"L({target})",
              f"L({target}) 95%", f"Δ vs baseline at {target}", "Δ 95%", "",
              "crossing", "crossing 95%"]
    rows = []
    for v in ladder["variants"]:
        fit, diff = v["fit"] or {}, v["difference"] or {}
        done = sum(1 for r in v["rungs"] if r[METRIC]["n"])
        crossing = diff.get("crossing")
        rows.append([
            v["label"], f"{done}/{len(v['rungs'])}", _g(fit.get("E")), _g(fit.get("A")),
            _g(fit.get("alpha"), 3), _range((fit.get("intervals") or {}).get("alpha"), 3),
            _g(fit.get("prediction")), _range((fit.get("intervals") or {}).get("prediction")),
            "baseline" if v["is_baseline"] else (
                "-" if not diff else f"{diff['difference']:+.4f}"),
            _range(diff.get("interval")), "*" if diff.get("significant") else "",
            "-" if v["is_baseline"] else (_g(crossing, 3) if crossing else "none"),
            _range(diff.get("crossing_interval"), 3) + (  # of the resamples that cross
                f" ({diff['crossing_share']:.0%} cross)" if diff.get("crossing_interval")
                else "")])
    return header, rows


def ladder_lines(ladder):
    """The text report's ladder section."""
    header, rows = ladder_table(ladder)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["", f"size ladder: final loss against {ladder['x_name']}, "
                 f"L = E + A * x^-alpha, extrapolated to {ladder['extrapolate_to']:.3g}",
             f"  ({ladder['method']}; Δ * when its interval excludes 0)"]
    for row in [header, *rows]:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    for v in ladder["variants"]:
        for problem in (v["fit_problem"], v["difference_problem"]):
            if problem:
                lines.append(f"  {v['label']}: {problem}")
    return lines
