"""A sweep store with 10,000 runs: what planning, resuming, writing a result, --status, the
report, the HTML page and the dry run cost, without training anything.

    python benchmarks/sweep_store.py [--points 500] [--seeds 20] [--repeat 3]

The sweep is a 1-block byte-level model, its grid 2 norms x 25 learning rates x 10 warm-ups
(500 points) x 20 seeds. Its store is filled through the store's own API (``Store.add``, then
``start`` and ``finish`` per run with a synthetic outcome: a loss that depends on the point and
the seed, a 20-step curve); the last seed's runs are left pending, a few failed, one running
(its driver gone), as a sweep caught mid-way. Filling it writes with ``synchronous=OFF`` (the
store's own FULL would cost an fsync per run, and filling is not what is measured); the one
result written and timed afterwards uses the store's own settings.

Each step is timed ``--repeat`` times and the best is printed: on a shared machine the others'
load only ever adds time. The load average is printed before and after. ``--status`` end to end
is also timed as the command line runs it (a fresh process: imports, plan, store, text).
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SPEC = {"name": "micro", "seed": 123, "tokenizer": "bytes",
        "model": {"vocab_size": 256, "context_length": 32, "emb_dim": 16, "n_heads": 2,
                  "n_layers": 1, "drop_rate": 0.0}}
CORPUS = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * i % 97}.\n"
                 for i in range(300))
CURVE_POINTS = 20


def grid_for(points):
    """2 norms x learning rates x warm-ups: ``points`` points (an even number)."""
    warmups = 10 if points % 20 == 0 else 1
    rates = points // (2 * warmups)
    return {"components.norm": ["layernorm", "rmsnorm"],
            "train.lr": [round(1e-3 + 1e-4 * i, 6) for i in range(rates)],
            "train.warmup": list(range(warmups))}


def write_sweep(folder, points, seeds):
    (folder / "corpus.txt").write_text(CORPUS)
    (folder / "micro.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    doc = {"name": "store10k", "base": "micro.yaml", "grid": grid_for(points),
           "seeds": seeds, "train": {"batch_size": 4, "seq_len": 16, "eval_every": 10,
                                     "eval_tokens": 256, "corpus": "corpus.txt"},
           "budget": {"steps": 200}}
    path = folder / "store10k.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def synthetic_outcome(run, rng):
    """A worker's outcome, made up: the loss falls with the point's index, noise per seed."""
    final = 2.0 - 0.0005 * run.point.index + rng.gauss(0, 0.02)
    curve = [{"step": 10 * i, "tokens": 640 * i, "train_loss": final + 3.0 / (1 + i) + 0.05,
              "val_loss": final + 3.0 / (1 + i)} for i in range(CURVE_POINTS)]
    metrics = {"final_val_loss": final, "best_val_loss": final - 0.01, "best_step": 190,
               "best_tokens": 12160, "unigram_baseline": 3.0, "tokens_per_second": 1000.0,
               "train_seconds": 1.3, "eval_seconds": 0.1, "steps": 200, "tokens_seen": 12800,
               "parameters": 11968, "threads": 1, "training_flops_per_token": 46080,
               "memory_bytes": 10**6}
    return {"key": run.key, "state": "done", "seconds": 1.5, "host": "bench", "worker": "1",
            "metrics": metrics, "result": {"curve": curve, "final_val_loss": final}}


def fill(plan, db):
    """Every run but the last seed's done (1 in 200 failed), one left running."""
    from explorer.sweep.store import Store

    rng = random.Random(0)
    last_seed = plan.sweep.seeds[-1]
    store = Store(db)
    store.db.execute("PRAGMA synchronous=OFF")  # filling is not what is measured
    with store.driver_lock():
        store.add(plan, 1)
        for i, run in enumerate(plan.runs):
            if run.seed == last_seed:
                continue
            store.start(run.key, "1", "bench")
            outcome = synthetic_outcome(run, rng)
            if i % 200 == 199:
                outcome = {**outcome, "state": "failed", "failure": "diverged",
                           "reason": "train: diverged at step 7"}
            store.finish(outcome)
        left = next(run for run in plan.runs if run.seed == last_seed)
        store.start(left.key, "1", "bench")  # its driver "dies": running, no driver
    store.close()
    return [run for run in plan.runs if run.seed == last_seed][1:]


def best_of(repeat, action):
    """(the best time in seconds, the action's last value)."""
    times = []
    for _ in range(repeat):
        clock = time.perf_counter()
        value = action()
        times.append(time.perf_counter() - clock)
    return min(times), value


def write_one(plan, db, pending):
    """The driver's write of one result: start, then finish, each its own transaction, with
    the store's own durability (synchronous=FULL, WAL)."""
    from explorer.sweep.store import Store

    store = Store(db)
    run = pending.pop()
    with store.driver_lock():
        clock = time.perf_counter()
        store.start(run.key, "1", "bench")
        store.finish(synthetic_outcome(run, random.Random(1)))
        seconds = time.perf_counter() - clock
    store.close()
    return seconds


def resume(plan, db):
    """What a start does before running anything, under the lock: add the plan's runs it lacks,
    put back what a dead driver left running, find what is left."""
    from explorer.sweep.store import Store

    store = Store(db)
    keys = [run.key for run in plan.runs]
    with store.driver_lock():
        store.add(plan, 1)
        store.reset_stale()
        todo = store.todo(keys)
    store.close()
    return todo


def status_command(path, db):
    done = subprocess.run([sys.executable, "-m", "explorer", "sweep", str(path), "--db",
                           str(db), "--status"], capture_output=True, text=True, check=True)
    return done.stdout


def measure(points, seeds, repeat):
    from explorer.html import sweep_page
    from explorer.sweep import load_sweep, make_plan, report, status
    from explorer.sweep.driver import remaining
    from explorer.sweep.estimate import estimate
    from explorer.sweep.results import to_text
    from explorer.sweep.standing import status_text

    f = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_sweep(Path(tmp), points, seeds)
        db = Path(tmp) / "store10k.sqlite"
        sweep = load_sweep(path)
        f["plan"], plan = best_of(repeat, lambda: make_plan(sweep))
        f["points"], f["runs"] = len(plan.points), len(plan.runs)
        clock = time.perf_counter()
        pending = fill(plan, db)
        f["fill"] = time.perf_counter() - clock
        f["store_bytes"] = db.stat().st_size
        f["remaining"], left = best_of(repeat, lambda: remaining(plan, db))
        f["runs_left"] = len(left)
        f["resume"], _ = best_of(repeat, lambda: resume(plan, db))
        f["write_one"] = min(write_one(plan, db, pending) for _ in range(repeat))
        f["status"], _ = best_of(repeat, lambda: status_text(status(sweep, db, plan)))
        f["status_command"], _ = best_of(repeat, lambda: status_command(path, db))
        f["report"], result = best_of(repeat, lambda: to_text(report(sweep, db, plan=plan)))
        result = report(sweep, db, plan=plan)
        where = status(sweep, db, plan)
        f["page"], page = best_of(repeat, lambda: sweep_page(result, where))
        f["page_bytes"] = len(page.html.encode())
        f["page_problems"] = page.problems
        f["dry_run"], _ = best_of(1, lambda: estimate(plan, remaining(plan, db)))
    return f


STEPS = (("plan", "make_plan (load and check 500 points, key 10,000 runs)"),
         ("remaining", "what is left, read-only (--dry-run's and the driver's look)"),
         ("resume", "a start's own look, under the lock: add, reset stale, to do"),
         ("write_one", "write one result (start + finish, synchronous=FULL)"),
         ("status", "--status: status() and its text"),
         ("status_command", "--status end to end: a fresh `python -m explorer` process"),
         ("report", "the report: build_report() and its text"),
         ("page", "the HTML page (table and charts) from the report"),
         ("dry_run", "--dry-run's estimate (costs per point, a few points timed; once)"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=500, help="grid points (a multiple of 20)")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="times each step; the best is kept")
    args = parser.parse_args()
    if args.points < 2 or args.points % 2:
        parser.error("--points: an even number, 2 or more")
    load_before = os.getloadavg()
    f = measure(args.points, args.seeds, args.repeat)
    f.update(load_before=load_before, load_after=os.getloadavg(),
             cores=len(os.sched_getaffinity(0)), repeat=args.repeat)
    print(f"{f['runs']:,} runs ({f['points']} points x {args.seeds} seeds), store "
          f"{f['store_bytes'] / 2**20:.1f} MB, {f['runs_left']} runs left; {f['cores']} cores, "
          f"load average {f['load_before'][0]:.2f} before, {f['load_after'][0]:.2f} after; "
          f"best of {args.repeat}; filling the store took {f['fill']:.1f} s (not measured)")
    for name, what in STEPS:
        print(f"  {f[name]:8.3f} s  {what}")
    print(f"  page: {f['page_bytes'] / 2**20:.1f} MB"
          + (f"; problems: {f['page_problems']}" if f["page_problems"] else ""))
    print(json.dumps(f, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
