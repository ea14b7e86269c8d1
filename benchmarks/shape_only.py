"""Shape-only analyses against the time it takes to import torch, in one run.

    python benchmarks/shape_only.py [--repeat 3] [--no-sweeps]

Measures, each in a fresh process as a user runs it: ``python -c "import torch"`` (the median of
``--repeat`` x 2 runs), then for specs/gpt3_175b.yaml and every specs/models/*.yaml
``explorer build SPEC --only params,memory,flops`` (the median wall time of ``--repeat`` runs
and the largest peak RSS, read from ``os.wait4``'s resource usage of that very child), and
(unless ``--no-sweeps``) ``explorer sweep GRID --dry-run`` on two generated 100-point grids
over n_layers x emb_dim: tiny sizes (1-10 layers, width 16-160) and large ones (8-96 layers,
width 1536-15360). Commands take turns, round by round, so drift on a shared machine hits them
alike. Prints a markdown table and writes it to benchmarks/shape_only.md with the machine, the
load average before and after, and the commands.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ANALYSES = "params,memory,flops"
IMPORT_TORCH = [sys.executable, "-c", "import torch"]


def run(argv):
    """Wall seconds and peak RSS (MiB) of one child process, which must succeed."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    error = child.stderr.read().decode()
    child.stderr.close()
    if child.returncode:
        raise SystemExit(f"{' '.join(map(str, argv))} failed ({child.returncode}): {error}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def grids(folder):
    """Two generated 100-point sweeps: tiny sizes and GPT-3-like ones."""
    tiny = {"name": "grid-tiny", "base": str(ROOT / "specs" / "tiny.yaml"),
            "grid": {"model.n_layers": list(range(1, 11)),
                     "model.emb_dim": list(range(16, 161, 16))},
            "seeds": [1], "train": {"batch_size": 8, "seq_len": 64}, "budget": {"steps": 100}}
    large = {"name": "grid-large", "base": str(ROOT / "specs" / "gpt3_175b.yaml"),
             "grid": {"model.n_layers": [8, 16, 24, 32, 40, 48, 56, 64, 80, 96],
                      "model.emb_dim": list(range(1536, 15361, 1536))},
             "seeds": [1], "train": {"batch_size": 1, "seq_len": 2048},
             "budget": {"steps": 100}}
    paths = []
    for doc in (tiny, large):
        path = folder / f"{doc['name']}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(path)
    return paths


def commands(folder, sweeps):
    explorer = [sys.executable, "-m", "explorer"]
    specs = [ROOT / "specs" / "gpt3_175b.yaml", *sorted((ROOT / "specs" / "models").glob("*.yaml"))]
    out = [(f"explorer build {spec.relative_to(ROOT)} --only {ANALYSES}",
            [*explorer, "build", str(spec), "--only", ANALYSES]) for spec in specs]
    if sweeps:
        for path in grids(folder):
            out.append((f"explorer sweep {path.stem}.yaml --dry-run (100 points)",
                        [*explorer, "sweep", str(path), "--dry-run", "--db",
                         str(folder / f"{path.stem}.sqlite")]))
    return out


def table(torch_seconds, rows):
    lines = ["| command | wall s | import torch s | ratio | peak MiB |", "|---|---|---|---|---|"]
    for name, walls, peaks in rows:
        wall = statistics.median(walls)
        lines.append(f"| `{name}` | {wall:.2f} | {torch_seconds:.2f} | "
                     f"{wall / torch_seconds:.1f}x | {max(peaks):.0f} |")
    return "\n".join(lines)


def measure(repeat=3, sweeps=True):
    """``(table, report)``: the markdown table, and the page benchmarks/shape_only.md holds."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        todo = commands(Path(tmp), sweeps)
        torch_walls, results = [], {name: ([], []) for name, _ in todo}
        for _ in range(repeat):  # round by round: drift hits every command alike
            torch_walls += [run(IMPORT_TORCH)[0] for _ in range(2)]
            for name, argv in todo:
                wall, peak = run(argv)
                results[name][0].append(wall)
                results[name][1].append(peak)
                print(f"  {name}: {wall:.2f} s, {peak:.0f} MiB", file=sys.stderr)
    torch_seconds = statistics.median(torch_walls)
    text = table(torch_seconds, [(name, *results[name]) for name, _ in todo])
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), "unknown CPU")
    report = (f"# Shape-only analyses against `import torch`\n\n"
              f"Machine: {cpu}, {os.cpu_count()} cores; Python {sys.version.split()[0]}; load "
              f"average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after. Each command "
              f"runs in a fresh process ({repeat} rounds, commands taking turns): the median "
              f"wall time and the largest peak RSS (os.wait4). `import torch`: `python -c "
              f"\"import torch\"`, median of {len(torch_walls)}.\n\n{text}\n")
    return text, report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command")
    parser.add_argument("--no-sweeps", action="store_true", help="leave out the sweep dry-runs")
    args = parser.parse_args()
    text, report = measure(args.repeat, not args.no_sweeps)
    print(text)
    (ROOT / "benchmarks" / "shape_only.md").write_text(report)


if __name__ == "__main__":
    main()
