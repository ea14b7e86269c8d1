"""``explorer sweep FILE --status``: where a sweep stands, read from its store (no torch)."""

import time

from .progress import duration
from .store import STATES

# What a status reads of each run: no JSON (task, metrics, curves) to decode.
STATUS_COLUMNS = ("state", "label", "seed", "host", "worker", "started")


def count_states(rows, planned):
    """Runs by state, from ``rows`` (key -> row) of ``planned`` runs: the ones the store does not
    hold yet (no driver has added them) are pending."""
    counts = dict.fromkeys(STATES, 0)
    for row in rows.values():
        counts[row["state"]] += 1
    counts["pending"] += planned - len(rows)
    return counts


def build_status(plan, store):
    """Counts by state, per point, the runs in flight and the driver holding the store."""
    from .sequential import active_plan

    plan = active_plan(plan, store)  # adaptive seeds: the runs the schedule wants so far
    rows = store.rows([run.key for run in plan.runs], STATUS_COLUMNS)
    counts = count_states(rows, len(plan.runs))
    points = []
    for point in plan.points:
        held = {run.key: rows[run.key] for run in plan.runs_of(point) if run.key in rows}
        states = count_states(held, len(plan.runs_of(point)))
        points.append({"label": point.label, "config": point.coords,
                       **{s: states[s] for s in ("done", "failed", "running", "pending")}})
    now = time.time()
    running = [{"label": r["label"], "seed": r["seed"], "host": r["host"], "worker": r["worker"],
                "seconds": now - r["started"] if r["started"] else None}
               for r in rows.values() if r["state"] == "running"]
    return {"sweep": plan.sweep.name, "source": plan.sweep.source, "store": str(store.path),
            "driver": store.driver_running(), "counts": counts, "runs": len(plan.runs),
            "points": points, "running": running, "other_runs_in_store": store.others(rows)}


def status_text(status):
    c = status["counts"]
    lines = [f"sweep {status['sweep']}  ({status['source']}; store {status['store']})",
             f"{status['runs']} runs: {c['done']} done, {c['failed']} failed, {c['running']} "
             f"running, {c['pending']} pending",
             f"driver: {status['driver'] or 'none running'}"]
    if c["running"] and not status["driver"]:
        lines.append("  (runs marked running were left by a driver that stopped: the next "
                     "start runs them again)")
    width = max(len(p["label"]) for p in status["points"]) if status["points"] else 0
    lines.append("")
    for p in status["points"]:
        lines.append(f"  {p['label']:<{width}}  done {p['done']}  failed {p['failed']}  "
                     f"running {p['running']}  pending {p['pending']}")
    for r in status["running"]:
        since = f" for {duration(r['seconds'])}" if r["seconds"] is not None else ""
        lines.append(f"  running: {r['label']} seed {r['seed']} on {r['host'] or '?'} "
                     f"(worker {r['worker'] or '?'}){since}")
    if status["other_runs_in_store"]:
        lines.append(f"  the store also holds {status['other_runs_in_store']} runs of earlier "
                     "versions of this sweep")
    return "\n".join(lines)

