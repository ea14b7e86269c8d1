"""The capability profile of a probe, from its store at any time: per task, level and spec the
score at the best learning rate x weight decay, its mean and 95% CI over seeds, and the paired
difference against the first spec; text, JSON and a chart (a panel per task).

Selection (MAD's protocol, best run kept): per spec, task and level, the lr x weight decay
setting with the highest mean validation accuracy over its seeds wins (among the settings with
the most seeds done; ties: the first in grid order). The seeds reported are that one setting's,
all of them: no seed is picked on its own. The CI is therefore over seeds at a setting chosen on
those same seeds: it measures the seed spread honestly, while the mean carries the best-of-k
optimism every spec gets alike.
"""

import time

from . import stats
from .results import TASK_METRIC
from .standing import count_states

COLUMNS = ("state", "seed", "metrics")
CONVENTIONS = (
    "score: the final validation accuracy on the task's target positions (higher is better). "
    "Per spec, task and level, the lr x weight decay setting with the highest mean score over "
    "its seeds is kept (among those with the most seeds done; ties: the first); its seeds' mean "
    "and 95% Student's t CI are shown. Δ: the mean over seeds of (spec - first spec), each at "
    "its own best setting, with its 95% t CI; * when that CI excludes 0.")


def _scores(rows, runs):
    """``{seed: score}`` of a setting's done runs."""
    done = [rows[r.key] for r in runs if r.key in rows and rows[r.key]["state"] == "done"]
    return {row["seed"]: row["metrics"][TASK_METRIC] for row in done}


def best_setting(settings):
    """The kept setting of ``settings`` (each ``{"lr", "weight_decay", "scores"}``, grid
    order): the highest mean score among those with the most seeds done; None when none is."""
    most = max(len(s["scores"]) for s in settings)
    if not most:
        return None
    def mean(s):
        return stats.summarize(s["scores"].values())["mean"]
    candidates = [s for s in settings if len(s["scores"]) == most]
    best = max(mean(s) for s in candidates)
    return next(s for s in candidates if mean(s) == best)


def build_profile(probe, store):
    """The profile as plain data (what ``--format json`` prints)."""
    plan = probe.plan
    rows = store.rows([run.key for run in plan.runs], COLUMNS)
    groups = {}  # (task, level, spec) -> settings in grid order
    for point in plan.points:
        where = probe.where[point.index]
        runs = plan.runs_of(point)
        groups.setdefault((where["task"], repr(where["level"]), where["spec"]), []).append({
            "lr": where["lr"], "weight_decay": where["weight_decay"],
            "scores": _scores(rows, runs),
            "failed": sum(rows[r.key]["state"] == "failed" for r in runs if r.key in rows)})
    seeds = list(plan.sweep.seeds)
    cells = []
    for task in probe.suite.tasks:
        for level in task.levels:
            first = None
            for spec in probe.labels:
                settings = groups[(task.name, repr(level), spec)]
                kept = best_setting(settings)
                scores = kept["scores"] if kept else {}
                first = scores if first is None else first
                complete = all(len(s["scores"]) + s["failed"] == len(seeds) for s in settings)
                cells.append({
                    "task": task.name, "knob": task.knob, "level": level, "spec": spec,
                    "best": None if not kept else {"lr": kept["lr"],
                                                   "weight_decay": kept["weight_decay"]},
                    "score": stats.summarize(scores.values()),
                    "seed_scores": {str(s): v for s, v in sorted(scores.items())},
                    "delta": None if spec == probe.labels[0] else
                    stats.paired_difference(scores, first),
                    "settings": [{"lr": s["lr"], "weight_decay": s["weight_decay"],
                                  "seeds_done": len(s["scores"]),
                                  "mean": stats.summarize(s["scores"].values())["mean"]}
                                 for s in settings],
                    "complete": complete})
    counts = count_states(rows, len(plan.runs))
    return {
        "suite": probe.suite.name, "description": probe.suite.description,
        "source": probe.suite.source, "store": str(store.path),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "specs": probe.labels, "spec_paths": probe.specs, "reference": probe.labels[0],
        "metric": TASK_METRIC, "higher_is_better": True, "confidence": stats.CONFIDENCE,
        "seeds": seeds, "lr": list(probe.suite.lrs),
        "weight_decay": list(probe.suite.weight_decays),
        "tasks": [{"task": t.name, "knob": t.knob, "levels": list(t.levels),
                   "settings": t.settings} for t in probe.suite.tasks],
        # The settings every run shares: the task, lr and weight decay are the grid's
        "train": {k: v for k, v in plan.sweep.train.to_dict().items()
                  if k not in ("task", "lr", "weight_decay")},
        "versions": plan.versions, "counts": counts,
        "complete": counts["done"] + counts["failed"] == len(plan.runs),
        "cells": cells, "conventions": CONVENTIONS}


def profile(probe, db, missing_ok=False):
    """The profile from the store at ``db`` (mid-probe too)."""
    from .store import open_to_read

    store = open_to_read(db, missing_ok)
    try:
        return build_profile(probe, store)
    finally:
        store.close()


# -- rendering -------------------------------------------------------------------------------

def _score(s):
    if s["mean"] is None:
        return "-"
    return f"{s['mean']:.3f}" + (f" [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]" if s["ci"] else "")


def _delta(d):
    if d is None or d["mean"] is None:
        return "-"
    text = f"{d['mean']:+.3f}" + (f" [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]" if d["ci"] else "")
    return text + (" *" if d["significant"] else "")


def table(profile):
    """Header and rows (strings): a row per task and level; per spec its score, and after the
    first spec's, each other's paired difference against it."""
    reference = profile["reference"]
    header = ["task", "level"]
    for spec in profile["specs"]:
        header += [spec] if spec == reference else [spec, f"Δ vs {reference}"]
    rows, row = [], None
    for cell in profile["cells"]:
        if cell["spec"] == reference:
            row = [cell["task"], f"{cell['knob']}={cell['level']}"
                   + ("" if all(c["complete"] for c in profile["cells"]
                                 if c["task"] == cell["task"] and c["level"] == cell["level"])
                      else " (incomplete)")]
            rows.append(row)
        row.append(_score(cell["score"]))
        if cell["spec"] != reference:
            row.append(_delta(cell["delta"]))
    return header, rows


def summary_line(profile):
    c = profile["counts"]
    return (f"{sum(c.values())} runs: {c['done']} done, {c['failed']} failed, {c['running']} "
            f"running, {c['pending']} pending "
            f"({'complete' if profile['complete'] else 'INCOMPLETE'})")


def to_text(profile):
    header, rows = table(profile)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"probe {profile['suite']}  ({profile['source']}; store {profile['store']})",
             f"{summary_line(profile)}; seeds {', '.join(map(str, profile['seeds']))}; best of "
             f"lr {profile['lr']} x weight decay {profile['weight_decay']}",
             "score: final validation accuracy, mean [95% CI] over seeds at the best lr x "
             f"weight decay; Δ: paired difference against {profile['reference']}, * when its "
             "95% CI excludes 0", ""]
    for row in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def to_json(profile):
    from ..analysis.report import to_json as strict_json  # NaN and inf as strings

    return strict_json(profile)


def figure(profile):
    """A panel per task: the score against the difficulty level (as categories, in the suite's
    order), a line per spec with its 95% CI as a band."""
    from ..analysis.plots import WIDTH, legend_below, readable, series_style
    from .plots import _figure

    tasks = profile["tasks"]
    fig = _figure(WIDTH, 3.2 if len(tasks) <= 3 else 5.8)
    columns = min(len(tasks), 3)
    grid = fig.subplots((len(tasks) + columns - 1) // columns, columns, squeeze=False)
    for ax in grid.flat[len(tasks):]:
        ax.set_visible(False)
    for ax, task in zip(grid.flat, tasks):
        positions = range(len(task["levels"]))
        for i, spec in enumerate(profile["specs"]):
            cells = [next(c for c in profile["cells"] if c["task"] == task["task"]
                          and c["level"] == level and c["spec"] == spec)
                     for level in task["levels"]]
            means = [c["score"]["mean"] for c in cells]
            style = series_style(i)
            ax.plot(positions, [float("nan") if m is None else m for m in means],
                    label=spec if ax is grid.flat[0] else None, **style)
            low = [c["score"]["ci"][0] if c["score"]["ci"] else float("nan") for c in cells]
            high = [c["score"]["ci"][1] if c["score"]["ci"] else float("nan") for c in cells]
            ax.fill_between(positions, low, high, color=style.get("color"), alpha=0.2,
                            linewidth=0)
        ax.set_xticks(list(positions), [str(level) for level in task["levels"]])
        ax.set_title(task["task"])
        ax.set_xlabel(task["knob"])
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
    legend_below(fig)
    readable(fig)
    return fig


def write_plot(profile, folder):
    """``profile.png`` in ``folder``; its path."""
    from pathlib import Path

    from ..analysis.plots import save

    path = Path(folder) / "profile.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save(figure(profile), path)
    return str(path)
