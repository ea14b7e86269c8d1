"""The answer of a sweep, from its store, at any time: per grid point the final validation loss
over seeds (mean, sd, 95% CI), the paired difference against its baseline, the costs; text,
markdown and JSON. Config columns first, metric columns after (Ray Tune's tables).

Mid-sweep the report is what the store holds: a point with runs still to come is marked
incomplete and its statistics cover the seeds done so far.
"""

import time

from . import stats
from .plan import short_names, show
from .standing import count_states

METRIC = stats.METRIC
TASK_METRIC = stats.TASK_METRIC
headline = stats.headline
# What a length cell of train.eval_lengths summarizes, and its column, by headline metric.
LENGTH_VALUES = {METRIC: "val_loss", TASK_METRIC: "val_accuracy"}
LENGTH_COLUMNS = {METRIC: "loss", TASK_METRIC: "acc"}
TASK_SCORES = ("final_accuracy", "final_exact_match")
LABELS = {METRIC: ("val loss", "final validation loss (nats)"),
          TASK_METRIC: ("accuracy", "final validation accuracy on the task's target positions")}


# What a report reads of each run: not its task or the rest of its training result.
REPORT_COLUMNS = ("state", "seed", "failure", "reason", "metrics", "curve", "seconds")


def _costs(done):
    """Cost columns of a point from its finished runs (the same for every seed but speed)."""
    if not done:
        return {}
    first = done[0]["metrics"]
    speeds = [r["metrics"]["tokens_per_second"] for r in done
              if r["metrics"].get("tokens_per_second")]
    return {"parameters": first["parameters"],
            "training_flops_per_token": first["training_flops_per_token"],
            "steps": first["steps"], "tokens": first["tokens_seen"],
            "memory_bytes": first.get("memory_bytes"),
            "tokens_per_second": sum(speeds) / len(speeds) if speeds else None,
            "seconds_per_run": sum(r["seconds"] or 0 for r in done) / len(done)}


def _band(done):
    """Validation curves of a point's seeds on one tokens axis: mean, min and max per point."""
    curves = [r["curve"] for r in done if r.get("curve")]
    if not curves:
        return None
    length = min(len(c) for c in curves)
    columns = [[c[i]["val_loss"] for c in curves] for i in range(length)]
    return {"tokens": [curves[0][i]["tokens"] for i in range(length)],
            "mean": [sum(col) / len(col) for col in columns],
            "low": [min(col) for col in columns], "high": [max(col) for col in columns],
            "seeds": len(curves)}


def _lengths(done, train, metric=METRIC):
    """Per length of ``train.eval_lengths``: the final validation loss (a task sweep's:
    accuracy) over the seeds done, its change from the value at the training length (the
    run's ``metric``, on the same windows; per seed, then summarized), or the reason the model
    could not be evaluated there (beyond a learned table's positions, a task with no such
    length)."""
    name = LENGTH_VALUES[metric]
    out = []
    for length in train.eval_lengths:
        key = str(length)
        found = [(r["metrics"].get("lengths", {}).get(key), r["metrics"][metric]) for r in done]
        values = [value for value, _ in found if value is not None]
        changes = [value - trained for value, trained in found if value is not None]
        reasons = {r["metrics"].get("length_reasons", {}).get(key) for r in done} - {None}
        out.append({"length": length, name: stats.summarize(values),
                    "change": stats.summarize(changes) if length != train.seq_len else None,
                    "reason": next(iter(reasons)) if reasons and not values else None})
    return out


def length_columns(report):
    """The lengths the report's points were evaluated at (``train.eval_lengths``), in order."""
    return sorted({cell["length"] for p in report["points"] for cell in p.get("lengths", ())})


def length_cells(report, point):
    """Per length column: (text, exact value) of the point's mean loss (accuracy) there, or
    its reason."""
    name = LENGTH_VALUES[report["metric"]]
    cells = {cell["length"]: cell for cell in point.get("lengths", ())}
    out = []
    for length in length_columns(report):
        cell = cells.get(length)
        if cell is None or (cell[name]["mean"] is None and not cell["reason"]):
            out.append(("-", None))
        elif cell[name]["mean"] is None:  # "beyond learned positions": JSON says more
            out.append((cell["reason"].split(" (")[0], None))
        else:
            out.append((_num(cell[name]["mean"]), cell[name]["mean"]))
    return out


def build_report(plan, store):
    """The report as plain data (what ``--format json`` prints)."""
    from .sequential import active_plan

    plan = active_plan(plan, store)  # adaptive seeds: the runs the schedule wants so far
    rows = store.rows([run.key for run in plan.runs], REPORT_COLUMNS)
    metric = headline(plan)
    points, finals = [], {}
    for point in plan.points:
        runs = [rows.get(run.key) for run in plan.runs_of(point)]
        runs = [r for r in runs if r is not None]
        done = [r for r in runs if r["state"] == "done"]
        finals[point.index] = {r["seed"]: r["metrics"][metric] for r in done}
        states = {s: sum(r["state"] == s for r in runs) for s in ("done", "failed", "running",
                                                                 "pending")}
        points.append({
            "index": point.index, "label": point.label, "config": point.coords,
            "seeds": len(runs_planned := plan.runs_of(point)), **states,
            "complete": states["done"] + states["failed"] == len(runs_planned),
            **({"adaptive": plan.schedule[point.index]} if plan.schedule else {}),
            METRIC: stats.summarize(r["metrics"][METRIC] for r in done),
            **({name: stats.summarize(r["metrics"][name] for r in done)
                for name in TASK_SCORES} if metric == TASK_METRIC else {}),
            "best_val_loss": stats.summarize(r["metrics"]["best_val_loss"] for r in done),
            "baseline": plan.points[plan.baselines[point.index]].label,
            "is_baseline": plan.baselines[point.index] == point.index,
            "costs": _costs(done),
            "failures": [{"seed": r["seed"], "kind": r["failure"], "reason": r["reason"]}
                         for r in runs if r["state"] == "failed"],
            "curve": _band(done),
            **({"lengths": _lengths(done, point.train, metric)}
               if point.train.eval_lengths else {}),
        })
    for entry in points:
        base = plan.baselines[entry["index"]]
        entry["delta"] = None if entry["is_baseline"] else stats.paired_difference(
            finals[entry["index"]], finals[base])
    counts = count_states(rows, len(plan.runs))  # pending: also those no driver added yet
    ladder = None
    if plan.sweep.scale:  # a size ladder: fits of loss against size, per variant
        from .ladder_report import ladder_section

        ladder = ladder_section(plan, finals)
    return {
        "sweep": plan.sweep.name, "description": plan.sweep.description,
        "source": plan.sweep.source, "store": str(store.path),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "metric": metric, "higher_is_better": metric == TASK_METRIC,
        "confidence": stats.CONFIDENCE,
        "columns": plan.columns, "seeds": list(plan.sweep.seeds),
        "train": plan.sweep.train.to_dict(), "versions": plan.versions,
        "counts": counts, "complete": counts["done"] + counts["failed"] == len(plan.runs) and (
            not plan.schedule or all(e["verdict"] != "undecided" for e in plan.schedule.values())),
        **({"adaptive": plan.sweep.adaptive} if plan.schedule else {}),
        "other_runs_in_store": store.others(rows),
        "points": points, **({"ladder": ladder} if ladder else {}),
        "conventions": (
            "final_val_loss: the validation loss (nats/token) at the last step (a task's: on its "
            "target positions); final_accuracy (a task sweep's metric, higher is better): the "
            "share of the task's validation target positions predicted exactly at the last "
            "step; mean over the "
            "seeds done, sample sd, 95% CI of the mean (Student's t, n-1 df); delta: the mean "
            "of (point - baseline) over the seeds both have done, with its 95% t CI; "
            "significant (*) when that CI excludes 0. Costs: parameters, training FLOPs per "
            "token (3 x forward), tokens/s over training steps (mean over seeds). lengths "
            "(train.eval_lengths): the final validation loss (a task sweep's: val_accuracy, "
            "on the task's validation set made at that length) at each length over the seeds, "
            "its change from the loss at the training length (per seed), or why the model "
            "cannot be evaluated there (val_loss n 0 and a reason)."),
    }


# -- rendering -------------------------------------------------------------------------------

def _num(value, digits=4):
    return "-" if value is None else f"{value:.{digits}f}"


def _interval(ci, digits=4):
    return "-" if not ci else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _signed(value):
    return "-" if value is None else f"{value:+.4f}"


def _big(n):
    if n is None:
        return "-"
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def table(report):
    """Header and rows of the results table (strings), config columns first."""
    names = short_names(report["columns"])
    header = [names[c] for c in report["columns"]] + [
        "seeds", LABELS[report["metric"]][0], "sd", "95% CI", "Δ vs baseline", "Δ 95% CI", "",
        "params", "FLOPs/token", "tokens/s"] + [
        f"{LENGTH_COLUMNS[report['metric']]}@{n}" for n in length_columns(report)]
    rows = []
    for p in report["points"]:
        m, d, c = p[report["metric"]], p["delta"], p["costs"]
        seeds = f"{p['done']}/{p['seeds']}" + ("" if p["complete"] else " (incomplete)")
        rows.append([show(p["config"][k]) for k in report["columns"]] + [
            seeds, _num(m["mean"]), _num(m["sd"]), _interval(m["ci"]),
            "baseline" if p["is_baseline"] else _signed(d["mean"]),
            "" if p["is_baseline"] else _interval(d["ci"]),
            "*" if d and d["significant"] else "",
            f"{c['parameters']:,}" if c else "-", _big(c.get("training_flops_per_token")),
            _num(c.get("tokens_per_second"), 0)] + [text for text, _ in length_cells(report, p)])
    return header, rows


def summary_line(report):
    c = report["counts"]
    total = sum(c.values())
    state = "complete" if report["complete"] else "INCOMPLETE"
    seeds = (f"{report['adaptive']['min']} to {report['adaptive']['max']} seeds each"
             if report.get("adaptive") else f"x {len(report['seeds'])} seeds")
    return (f"{total} runs ({len(report['points'])} points {seeds}): "
            f"{c['done']} done, {c['failed']} failed, {c['running']} running, {c['pending']} "
            f"pending ({state})")


def _length_note(report):
    if not length_columns(report):
        return []
    if report["metric"] == TASK_METRIC:
        return ["acc@N: the final validation accuracy on the task's validation set made N "
                "tokens long by its at_length (train.eval_lengths; at the task's own length, "
                "the validation set itself), mean over seeds."]
    return [f"loss@N: the final validation loss on windows of N tokens (train.eval_lengths; "
            f"trained on {report['train']['seq_len'] or 'context_length'}-token windows), "
            "mean over seeds."]


def failure_lines(report):
    return [f"{p['label']} seed {f['seed']}: {f['kind']}: {f['reason']}"
            for p in report["points"] for f in p["failures"]]


def to_text(report):
    header, rows = table(report)
    numeric = set(range(len(report["columns"]), len(header)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"sweep {report['sweep']}  ({report['source']}; store {report['store']})",
             summary_line(report),
             f"metric: {LABELS[report['metric']][1]}; Δ: paired difference against the baseline "
             "on the same seeds, * when its 95% CI excludes 0", *_length_note(report), ""]
    for row in [header, *rows]:
        cells = [cell.rjust(w) if i in numeric else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    lines += adaptive_lines(report)
    if report.get("ladder"):
        from .ladder_report import ladder_lines

        lines += ladder_lines(report["ladder"])
    failures = failure_lines(report)
    if failures:
        lines += ["", "failed runs:"] + [f"  {f}" for f in failures]
    if report["other_runs_in_store"]:
        lines += ["", f"the store also holds {report['other_runs_in_store']} runs of earlier "
                      "versions of this sweep (kept, not shown)"]
    return "\n".join(lines)


def adaptive_lines(report):
    """Adaptive seeds: per point the seeds it got and why it stopped (or goes on)."""
    if not report.get("adaptive"):
        return []
    a = report["adaptive"]
    width = max(len(p["label"]) for p in report["points"])
    lines = ["", f"adaptive seeds ({a['min']} to {a['max']}, until decided; anytime-valid "
                 "Bayes factor t-test, alpha 0.05):"]
    for p in report["points"]:
        entry = p["adaptive"]
        bf = "" if entry["bayes_factor"] is None else f"  BF {entry['bayes_factor']:.3g}"
        lines.append(f"  {p['label']:<{width}}  {p['done']}/{entry['seeds']} seeds  "
                     f"{entry['reason']}{bf}")
    return lines


def _md(text):
    return str(text).replace("|", "\\|")


def to_markdown(report):
    header, rows = table(report)
    lines = [f"**sweep {_md(report['sweep'])}** (`{_md(report['source'])}`): "
             f"{_md(summary_line(report))}", "",
             "| " + " | ".join(_md(h) for h in header) + " |",
             "|" + "|".join("---" if i < len(report["columns"]) else "---:"
                            for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    lines += ["", f"{LABELS[report['metric']][1].capitalize()}: mean over seeds, sd, 95% CI (Student's "
                  "t). Δ: paired difference against the baseline on the same seeds; * when its "
                  "95% CI excludes 0.", *_length_note(report)]
    if report.get("ladder"):
        from .ladder_report import ladder_table

        header, rows = ladder_table(report["ladder"])
        lines += ["", f"**Size ladder**: {_md(report['ladder']['method'])}", "",
                  "| " + " | ".join(_md(h) for h in header) + " |",
                  "|---|" + "---:|" * (len(header) - 1)]
        lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    adaptive = adaptive_lines(report)
    if adaptive:
        lines += ["", "```", *adaptive[1:], "```"]
    failures = failure_lines(report)
    if failures:
        lines += ["", "Failed runs:", ""] + [f"- {_md(f)}" for f in failures]
    return "\n".join(lines)


def to_json(report):
    from ..analysis.report import to_json as strict_json  # NaN and inf as strings: strict JSON

    return strict_json(report)
