"""What a sweep costs beyond its runs: a 16-run tiny sweep on the local executor and on a local Ray.

    python benchmarks/sweep_overhead.py [--workers 2] [--steps 300] [--no-ray]

The sweep trains specs/tiny.yaml at 2 blocks, 4 positional encodings x 4 seeds, one thread per
run. Each run's own time is measured by its worker (from receiving the task to sending the
outcome: building the model, training, evaluating). The ideal wall time is the sum of those
times divided by the workers; the overhead is the rest: starting the workers (each imports
torch), planning, the store's transactions, and runs waiting on each other. For Ray, starting
Ray is timed apart and the overhead is also given per run.

The machine's load average is printed before and after: on a shared machine the figures move
with it.
"""

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def write_sweep(folder, steps):
    doc = {"name": "overhead", "base": str(ROOT / "specs" / "tiny.yaml"),
           "set": {"model.n_layers": 2},
           "grid": {"components.positional": ["learned", "rope", "alibi", "none"]},
           "seeds": [1, 2, 3, 4],
           "train": {"batch_size": 8, "seq_len": 64, "lr": 3e-3, "warmup": 20,
                     "schedule": "cosine", "min_lr": 3e-4, "eval_every": steps,
                     "eval_tokens": 4096},
           "budget": {"steps": steps}}
    path = folder / "overhead.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def own_seconds(db):
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT seconds, started FROM runs WHERE state = 'done'").fetchall()
    return [s for s, _ in rows], min(started for _, started in rows)


def measure(path, db, executor, workers):
    from explorer.sweep import run_sweep

    start_wall, start_clock = time.time(), time.perf_counter()
    result = run_sweep(path, executor=executor, workers=workers, db=db)
    wall = time.perf_counter() - start_clock
    seconds, first_start = own_seconds(db)
    assert result["counts"]["done"] == len(seconds) == 16, result["counts"]
    ideal = sum(seconds) / workers
    return {"runs": len(seconds), "wall_seconds": wall, "sum_run_seconds": sum(seconds),
            "ideal_seconds": ideal, "overhead": wall / ideal - 1,
            "overhead_per_run_seconds": (wall - ideal) / len(seconds),
            "seconds_to_first_run": first_start - start_wall}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=300, help="steps per run")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray measurement")
    args = parser.parse_args()
    figures = {"load_before": os.getloadavg(), "cores": len(os.sched_getaffinity(0)),
               "workers": args.workers, "steps": args.steps}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_sweep(Path(tmp), args.steps)
        figures["local"] = measure(path, Path(tmp) / "local.sqlite", "local", args.workers)
        if not args.no_ray:
            from explorer.sweep.ray_executor import RayExecutor

            clock = time.perf_counter()
            ray = RayExecutor(workers=args.workers, threads=1)
            figures["ray_start_seconds"] = time.perf_counter() - clock
            try:
                figures["ray"] = measure(path, Path(tmp) / "ray.sqlite", ray, args.workers)
            finally:
                ray.close()
    figures["load_after"] = os.getloadavg()
    report(figures)


def report(f):
    print(f"16-run tiny sweep, {f['workers']} workers x 1 thread, {f['steps']} steps per run, "
          f"{f['cores']} cores; load average before {f['load_before'][0]:.2f}, after "
          f"{f['load_after'][0]:.2f}")
    for name in ("local", "ray"):
        m = f.get(name)
        if not m:
            continue
        print(f"{name:>5}: wall {m['wall_seconds']:.1f} s, runs' own time "
              f"{m['sum_run_seconds']:.1f} s / {f['workers']} workers = {m['ideal_seconds']:.1f} s: overhead "
              f"{100 * m['overhead']:.1f}% ({m['overhead_per_run_seconds']:.2f} s per run; first "
              f"run started {m['seconds_to_first_run']:.1f} s in)")
    if "ray_start_seconds" in f:
        print(f"  ray: starting the local Ray took {f['ray_start_seconds']:.1f} s "
              "(not in its wall)")
    print(json.dumps(f, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
