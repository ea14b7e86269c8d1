"""Every figure README.md quotes, produced here so that it cannot drift.

    python docs/figures.py                 # which figures are up to date (the fast ones are run)
    python docs/figures.py --write [NAME]  # compute the figures (all, or NAME...) into README.md
    python docs/figures.py --check --fast  # exit 1 if a fast figure differs (tests do this)
    python docs/figures.py --show NAME     # print one figure
    python docs/figures.py --pictures      # redraw the pictures README shows (docs/img)

README.md holds each figure between two markers, ``<!-- figure: NAME -->`` and
``<!-- /figure: NAME -->``; ``--write`` replaces what lies between them. A *fast* figure is
deterministic and takes seconds (error messages, counts, the KV cache): tests/test_readme.py
recomputes each and compares it with README's copy. A *slow* one trains, times or benchmarks
(timings are given as ranges with the machine they came from): it is only recomputed by hand,
with this script, and the test checks only that its markers are in place.
"""

import argparse
import contextlib
import functools
import io
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FIGURES = {}  # name -> (function, slow)


def figure(name, slow=False):
    def register(function):
        FIGURES[name] = (function, slow)
        return function
    return register


def fenced(text, lang=""):
    return f"```{lang}\n{text.rstrip()}\n```"


@contextlib.contextmanager
def in_folder(folder):
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def cli(*args, env=None):
    """``explorer ARGS`` in this process: (exit code, stdout, stderr)."""
    from explorer.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
                code = 0
            except SystemExit as exc:
                code = exc.code
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, out.getvalue(), err.getvalue()


# -- fast figures ------------------------------------------------------------------------------

BAD_SPECS = {
    "bad.yaml": "extends: gpt2_small.yaml\nmodel: {n_head: 12}\n",
    "typo.yaml": "extends: gpt2_small.yaml\ncomponents: {norm: layernrom}\n",
    "heads.yaml": "extends: gpt2_small.yaml\nmodel: {emb_dim: 18, n_heads: 4}\n",
    "broken.yaml": "name: x\nmodel: {vocab_size: 256, n_layers: [2\n",
    "layout.yaml": ("extends: gpt2_small.yaml\nlayers:\n"
                    "  - {every: 2, first: 3, components: {attention: {window: 4}}}\n"),
}
BAD_SETS = [
    ["components.attention=gqa", "components.attention.n_kv_heads=5"],
    ["components.norm.eps=-1"],
    ["analyses.train.seq_len=2048"],
    ["tokenizer=gpt2", "model.vocab_size=256"],
]


@figure("spec-errors")
def spec_errors():
    """The one-line errors of bad specs and overrides, as the CLI prints them."""
    import shutil

    lines = []
    with tempfile.TemporaryDirectory() as folder, in_folder(folder):
        shutil.copy(ROOT / "specs" / "gpt2_small.yaml", "gpt2_small.yaml")
        for name, text in BAD_SPECS.items():
            Path(name).write_text(text)
            lines.append(cli("build", name, "--only", "params")[2].strip())
    with in_folder(ROOT):
        for sets in BAD_SETS:
            args = [arg for s in sets for arg in ("--set", s)]
            _, _, err = cli("build", "specs/gpt2_small.yaml", *args, "--only", "params")
            lines.append(err.strip())
    return fenced("\n".join(lines))


@figure("build-params")
def build_params():
    """The header and the params section of a build with an override (meta device: instant)."""
    with in_folder(ROOT):
        code, out, _ = cli("build", "specs/gpt2_small.yaml", "--set", "model.n_layers=2",
                           "--only", "params")
    assert code == 0
    head, _, params = out.partition("== params ==")
    first = head.splitlines()[0]
    return fenced(f"$ explorer build specs/gpt2_small.yaml --set model.n_layers=2 --only params\n"
                  f"{first}\n...\n== params =={params.rstrip()}")


@figure("layers-pattern")
def layers_pattern():
    """How a build shows a per-layer layout."""
    with in_folder(ROOT):
        code, out, _ = cli("build", "specs/ablations/local_global.yaml", "--only", "params")
    assert code == 0
    section = out[out.index("\nlayers:") + 1:out.index("== params ==")].rstrip()
    return fenced(f"$ explorer build specs/ablations/local_global.yaml --only params\n...\n"
                  f"{section}")


@figure("kv-cache")
def kv_cache():
    """The KV-cache lines of the memory analysis (they do not depend on its seq_len)."""
    import explorer

    lines = []
    with in_folder(ROOT):
        for path in ("specs/gpt2_small.yaml", "specs/ablations/gqa.yaml",
                     "specs/ablations/local_global.yaml"):
            spec = explorer.load_spec(path, overrides=["analyses.memory.seq_len=8"])
            kv = explorer.analyze(spec, only=["memory"])["analyses"]["memory"]["kv_cache"]
            per_token, full = kv["bytes_per_token"], kv["bytes_full_context"]
            lines.append(f"| `{path}` | {per_token['bf16']:,} | {full['bf16'] / 2**20:,.2f} MiB |")
    return ("| spec | KV cache bytes per token (bf16) | at 1,024 tokens (bf16) |\n"
            "|---|---:|---:|\n" + "\n".join(lines))


@figure("benchmarks")
def benchmarks():
    """The benchmark's figures from benchmarks/latest.json (``python benchmarks/run.py`` writes
    it): a fast figure, so README cannot quote another run than the one checked in."""
    import json

    res = json.loads((ROOT / "benchmarks" / "latest.json").read_text())
    m = res["machine"]
    peers = ("explorer", "book", "hf sdpa")

    def cells(row, value, fmt):
        got = {name: value(row[name]) for name in peers if name in row}
        ours = got["explorer"]
        values = [fmt(got[n]) if n in got else "-" for n in peers]
        ratios = [f"{ratio(ours, got[n]):.2f}x" if n in got else "-" for n in peers[1:]]
        return " | ".join(values + ratios)

    def ratio(ours, theirs):  # explorer / peer, higher is better
        return ours / theirs

    lines = ["| figure | explorer | book | HF (sdpa) | explorer / book | explorer / HF |",
             "|---|---|---|---|---|---|"]
    for dropout, row in (res.get("train") or {}).get("by_dropout", {}).items():
        lines.append(f"| training step, dropout {dropout}, steps/s | "
                     + cells(row, lambda v: 1 / v["median_s"], "{:.3f}".format) + " |")
        lines.append(f"| training MFU, dropout {dropout} | "
                     + " | ".join(f"{row[n]['mfu']:.0%}" if n in row else "-" for n in peers)
                     + " | | |")
    for t, row in res["forward"].items():
        lines.append(f"| forward T={t}, tokens/s | "
                     + cells(row, lambda v: v["tokens_per_s"], "{:,.0f}".format) + " |")
    for t, row in res["forward"].items():
        lines.append(f"| forward MFU, T={t} | "
                     + " | ".join(f"{row[n]['mfu']:.0%}" if n in row else "-" for n in peers)
                     + " | | |")
    lines.append("| greedy generation, tokens/s | "
                 + cells(res["generation"], lambda v: v["tokens_per_s"], "{:,.1f}".format) + " |")
    head = (f"{'Quick run' if res['quick'] else 'Full run'} of `python benchmarks/run.py"
            f"{'' if not res['quick'] else ' --quick'}` on a {m['cores']}-core {m['cpu']}, torch "
            f"{m['versions']['torch']}, transformers {m['versions']['transformers']}, fp32; "
            f"matmul peak {res['peak']['flops_per_s'] / 1e9:.0f} GFLOP/s measured in the same run:")
    compiled = [_compiled_note(dropout, row["explorer"], row["explorer compiled"])
                for dropout, row in (res.get("train") or {}).get("by_dropout", {}).items()
                if "explorer compiled" in row]
    targets = [f"{t['target']}: {_target_value(t)} (target {_target_value(t, 'threshold')}, "
               f"{'met' if t['met'] else 'missed'})" for t in res.get("targets", [])]
    notes = ["", "`torch.compile` (the train setting `compile: true`): " + "; ".join(compiled) + "."
             ] if compiled else []
    return "\n".join([head, "", *lines, *notes, "", "Targets of the training issue: "
                      + "; ".join(targets) + "."])


def _compiled_note(dropout, eager, compiled):
    note = (f"dropout {dropout}: {compiled['median_s']:.2f} s per step against "
            f"{eager['median_s']:.2f} s eager")
    if compiled["compile_s"] < 1:  # the first model's compiled code, reused (same classes)
        return note + " (the compiled code of the first model reused)"
    after = compiled.get("pays_off_after_steps")
    return note + (f", after {compiled['compile_s']:.0f} s of compiling: it pays off after "
                   + (f"{after:.0f} steps" if after is not None else "no number of steps"))


def _target_value(target, key="value"):
    value = target[key]
    if "MFU" in target["target"]:
        return f"{value:.0%}"
    if target["target"] == "explorer --help":
        return f"{value:.2f} s"
    return f"{value:.2f}x"


# -- slow figures: they train, time or benchmark ---------------------------------------------

def machine():
    """The machine a timing came from, in a few words."""
    import platform

    import torch

    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor() or "CPU")
    return f"{os.cpu_count()}-core {model}, torch {torch.__version__}"


def timed_runs(args, runs=3, env=None):
    """Wall seconds and peak resident bytes of ``python -m explorer ARGS``, each in a fresh
    process (its own ru_maxrss)."""
    import json
    import subprocess

    probe = ("import json, resource, subprocess, sys, time\n"
             "start = time.perf_counter()\n"
             "code = subprocess.run([sys.executable, '-m', 'explorer', *sys.argv[1:]],"
             " stdout=subprocess.DEVNULL).returncode\n"
             "print(json.dumps([code, time.perf_counter() - start,"
             " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024]))\n")
    out = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                              text=True, cwd=ROOT, env={**os.environ, **(env or {})}, check=True)
        code, seconds, peak = json.loads(done.stdout)
        assert code == 0, f"explorer {' '.join(args)} exited {code}"
        out.append((seconds, peak))
    return out


def seconds_range(values):
    low, high = min(values), max(values)
    return f"{low:.1f} s" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f} s"


@figure("mixers-benchmark")
def mixers_benchmark():
    """The linear-time mixers' benchmark from benchmarks/mixers.json (``python
    benchmarks/mixers.py`` writes it), as it printed it."""
    import json

    res = json.loads((ROOT / "benchmarks" / "mixers.json").read_text())
    load = f"load average {res['load_average'][0]:.1f} before, {res['load_average'][1]:.1f} after"
    command = " ".join(["python benchmarks/mixers.py", res["arguments"]]).strip()
    return (f"`{command}` on {res['machine']} ({load}; {res['noisy_runs']} training runs "
            f"retaken because other processes were busy):\n\n" + "\n".join(res["table"]))


@figure("main-job", slow=True)
def main_job():
    runs = timed_runs(["build", "specs/gpt2_small.yaml"])
    peak = max(p for _, p in runs)
    return (f"The main job takes {seconds_range([s for s, _ in runs])} and peaks at "
            f"{peak / 2**30:.2f} GiB resident ({len(runs)} runs on a {machine()}; "
            "`python docs/figures.py main-job` measures it again).")


# The run of the bounded-evaluation issue: 4 of gpt2_small's layers, 3 steps of 4 x 256 tokens,
# evaluated on 16,384 tokens of each split before and after training.
TRAIN_RUN = ["build", "specs/gpt2_small.yaml", "--set", "model.n_layers=4",
             "--set", "analyses.train.steps=3", "--set", "analyses.train.batch_size=4",
             "--set", "analyses.train.seq_len=256", "--only", "train"]


@functools.cache
def measured_training_run():
    """``explorer TRAIN_RUN --format json`` in a fresh process: its peak resident bytes
    (ru_maxrss), its train result and the load average before it; measured once for both
    figures that quote it."""
    import json
    import subprocess

    probe = ("import json, resource, subprocess, sys\n"
             "done = subprocess.run([sys.executable, '-m', 'explorer', *sys.argv[1:]],"
             " capture_output=True, text=True)\n"
             "print(json.dumps([done.returncode, done.stdout,"
             " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024]))\n")
    load = os.getloadavg()[0]
    done = subprocess.run([sys.executable, "-c", probe, *TRAIN_RUN, "--format", "json"],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    code, out, peak = json.loads(done.stdout)
    assert code == 0, f"explorer {' '.join(TRAIN_RUN)} exited {code}"
    return peak, json.loads(out)["analyses"]["train"], load


@figure("train-memory", slow=True)
def train_memory():
    peak, result, _ = measured_training_run()
    return (f"`explorer {' '.join(TRAIN_RUN)}` peaks at {peak / 2**30:.2f} GiB resident "
            "(ru_maxrss: torch, the tokenizer and the corpus included; it was checked against "
            f"a prediction of {result['memory']['total'] / 2**30:.2f} GiB for the run, its "
            f"training step), with a final validation loss of {result['final_val_loss']:.4f}; "
            "before evaluation was bounded it peaked at 9.0 GiB "
            f"(`python docs/figures.py train-memory` measures it again; {machine()}).")


@figure("eval-cost", slow=True)
def eval_cost():
    _, result, load = measured_training_run()
    evaluated = sum(result["corpus"]["eval_tokens"].values()) * len(result["curve"])
    trained, train_s, eval_s = result["tokens_seen"], result["train_seconds"], \
        result["eval_seconds"]
    ratio = (eval_s / evaluated) / (train_s / trained)
    return (f"`explorer {' '.join(TRAIN_RUN)}` (`python docs/figures.py eval-cost`; "
            f"{machine()}, load average {load:.1f} before): evaluation read {evaluated:,} tokens "
            f"in {eval_s:.0f} s, training {trained:,} tokens in {train_s:.0f} s: an evaluated "
            f"token costs {ratio:.2f}x a trained one (a forward against forward, backward and "
            f"AdamW), and evaluation took {eval_s / (train_s + eval_s):.0%} of the run.")


@figure("memory-refusal", slow=True)
def memory_refusal():
    with in_folder(ROOT):
        code, _, err = cli("compare", "specs/tiny.yaml", "specs/ablations/relu.yaml", "--only",
                           "train", env={"EXPLORER_AVAILABLE_MEMORY": "16GiB"})
    refusal = next(line for line in err.splitlines() if "needs about" in line)
    return fenced("$ EXPLORER_AVAILABLE_MEMORY=16GiB explorer compare specs/tiny.yaml "
                  f"specs/ablations/relu.yaml --only train\n...\n{refusal}")


@figure("compare-gradflow", slow=True)
def compare_gradflow():
    args = ["compare", "specs/gpt2_small.yaml", "specs/ablations/no_shortcut.yaml",
            "--only", "gradflow"]
    with in_folder(ROOT):
        code, out, _ = cli(*args)
    assert code == 0
    return fenced(f"$ explorer {' '.join(args)}\n{out.rstrip()}")


@figure("sweep-positional", slow=True)
def sweep_positional():
    """The report of sweeps/positional.yaml (runs what its store lacks, then reports)."""
    import time

    start = time.perf_counter()
    with in_folder(ROOT):
        code, out, _ = cli("sweep", "sweeps/positional.yaml", "--format", "markdown",
                           "--plots", "docs/img/sweep_positional")
    assert code == 0, out
    took = time.perf_counter() - start
    note = (f"(`explorer sweep sweeps/positional.yaml --format markdown`: 20 runs; "
            f"{took / 60:.0f} minutes on a {machine()} when nothing was in the store yet)"
            if took > 60 else "(`explorer sweep sweeps/positional.yaml --format markdown`)")
    return f"{out.rstrip()}\n\n{note}"


def sweep_report(path):
    """``(report, seconds, load)``: ``explorer sweep PATH --format json`` run from the
    repository (training what its store lacks), its JSON report, how long it took and the load
    average before it."""
    import json
    import time

    load, start = os.getloadavg()[0], time.perf_counter()
    with in_folder(ROOT):
        code, out, err = cli("sweep", path, "--format", "json")
    assert code == 0, err
    return json.loads(out), time.perf_counter() - start, load


@figure("length-extrapolation", slow=True)
def length_extrapolation():
    """sweeps/lengths.yaml (runs what its store lacks): per positional encoding, the validation
    loss at each of eval_lengths and its change from the training length, over the seeds."""
    report, took, load = sweep_report("sweeps/lengths.yaml")
    trained = report["train"]["seq_len"]
    lengths = [cell["length"] for cell in report["points"][0]["lengths"]]
    longer = [n for n in lengths if n > trained]
    header = (["positional"] + [f"loss@{n}" + (" (trained)" if n == trained else "")
                                for n in lengths] + [f"Δ@{n} [95% CI]" for n in longer])
    rows = []
    for point in report["points"]:
        cells = {cell["length"]: cell for cell in point["lengths"]}

        def loss(n):
            cell = cells[n]
            return f"{cell['val_loss']['mean']:.4f}" if cell["val_loss"]["n"] else \
                cell["reason"].split(" (")[0]

        def change(n):
            found = cells[n]["change"]
            if not found or not found["n"]:
                return "-"
            low, high = found["ci"]
            return f"{found['mean']:+.4f} [{low:+.4f}, {high:+.4f}]"

        rows.append([point["config"]["components.positional"], *map(loss, lengths),
                     *map(change, longer)])
    table = ["| " + " | ".join(header) + " |",
             "|---|" + "---:|" * (len(header) - 1)]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    seeds = len(report["seeds"])
    per_run = [p["costs"]["seconds_per_run"] for p in report["points"]]
    ran = (f"{took / 60:.0f} minutes (load average {load:.1f} before)" if took > 60 else
           f"{sum(per_run) / len(per_run):.0f} s a run, from the store,")
    note = (f"`explorer sweep sweeps/lengths.yaml`: tiny, 2 blocks, a 32-position context, "
            f"200 steps of 16 x {trained} tokens; validation loss (nats/token) at each length, "
            f"mean over {seeds} seeds; Δ: the change from the loss at {trained} tokens, per "
            f"seed, with its 95% t interval. {report['counts']['done']} runs: {ran} on a "
            f"{machine()}, shared with other work.")
    return "\n".join(table) + "\n\n" + note

def mixer_label(layers, n_layers):
    """A mixers.yaml point, named from its ``layers:`` value over the base's softmax attention."""
    if not layers:
        return "softmax attention (mha)"
    (entry,) = layers
    mixer = entry["components"]["attention"]
    name = mixer if isinstance(mixer, str) else mixer["name"]
    if entry.get("every") == 1:
        return name
    first = entry["first"]
    return f"{first}:{n_layers - first} hybrid ({name} x {first}, mha last)"


@figure("mixers-recall", slow=True)
def mixers_recall():
    """sweeps/mixers.yaml (runs what its store lacks): recall accuracy per token mixer, mean and
    95% CI over seeds, and the paired difference from softmax attention."""
    from explorer.sweep import load_sweep

    n_layers = load_sweep(ROOT / "sweeps" / "mixers.yaml").fixed["model.n_layers"]
    report, took, load = sweep_report("sweeps/mixers.yaml")

    def interval(stats, signed=""):
        if not stats or not stats["n"]:
            return "-"
        low, high = stats["ci"] or (stats["mean"], stats["mean"])
        return f"{stats['mean']:{signed}.3f} [{low:{signed}.3f}, {high:{signed}.3f}]"

    rows = ["| mixer | recall accuracy [95% CI] | Δ vs softmax [95% CI] | | s/run |",
            "|---|---:|---:|---|---:|"]
    for point in report["points"]:
        delta = point["delta"]
        rows.append(f"| {mixer_label(point['config']['layers'], n_layers)} "
                    f"| {interval(point['final_accuracy'])} "
                    f"| {'baseline' if point['is_baseline'] else interval(delta, '+')} "
                    f"| {'*' if delta and delta.get('significant') else ''} "
                    f"| {point['costs']['seconds_per_run']:.0f} |")
    train, task = report["train"], report["train"]["task"]
    ran = (f"{took / 60:.0f} minutes (load average {load:.1f} before)" if took > 60 else
           "read from the store, trained")
    note = (f"`explorer sweep sweeps/mixers.yaml --format json`: tiny, {n_layers} blocks of "
            f"width 64; recall of {task['n_pairs']} pairs ({task['n_keys']} keys, "
            f"{task['n_values']} values: chance {1 / task['n_values']:.3f}); "
            f"{train['budget']['steps']} steps of {train['batch_size']} sequences; accuracy on "
            f"the queried values of the validation set at the end, mean over "
            f"{len(report['seeds'])} seeds with its 95% t interval; Δ: paired difference from "
            f"softmax on the same seeds, * when its CI excludes 0. {report['counts']['done']} "
            f"runs: {ran} on a {machine()}, shared with other work.")
    return "\n".join(rows) + "\n\n" + note


# sweeps/mup_transfer.yaml cut to what a 2-core machine trains in well under an hour: widths 64
# to 256 (not 512) and 150 steps (not 300); the store keeps what ran (sweeps/*.sqlite).
MUP_TRANSFER_WIDTHS = (64, 128, 256)
MUP_TRANSFER_STEPS = 150
MUP_TRANSFER_STORE = ROOT / "sweeps" / "mup_transfer_reduced.sqlite"


def mup_transfer_sweep():
    """The reduced sweep the mup-transfer figure runs."""
    from dataclasses import replace

    from explorer.sweep import load_sweep
    from explorer.sweep.sweepfile import with_options

    sweep = load_sweep(ROOT / "sweeps" / "mup_transfer.yaml")
    sweep = replace(sweep, grid={**sweep.grid, "model.emb_dim": MUP_TRANSFER_WIDTHS})
    return with_options(sweep, budget={"steps": MUP_TRANSFER_STEPS})


def best_learning_rates(report):
    """``{parametrization: {width: (best lr, its final validation loss, {lr: loss})}}`` of a
    mup_transfer report (one seed: the mean is the run's loss)."""
    losses = {}
    for point in report["points"]:
        config = point["config"]
        key = (config["model.parametrization"], config["model.emb_dim"])
        losses.setdefault(key, {})[config["train.lr"]] = point["final_val_loss"]["mean"]
    out = {}
    for (parametrization, width), by_lr in sorted(losses.items()):
        best = min(by_lr, key=lambda lr: (by_lr[lr], lr))
        out.setdefault(parametrization, {})[width] = (best, by_lr[best], by_lr)
    return out


def draw_mup_transfer(best, path):
    """Final validation loss against the learning rate, a line per width, a panel per
    parametrization (the picture of Yang et al.'s Figure 1)."""
    from matplotlib.figure import Figure

    from explorer.analysis.plots import WIDTH, legend_below, save, series_style

    fig = Figure(layout="constrained")
    fig.set_size_inches(WIDTH, 3.2)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, parametrization in zip(axes, ("standard", "mup")):
        for i, (width, (lr, loss, by_lr)) in enumerate(best[parametrization].items()):
            lrs = sorted(by_lr)
            style = series_style(i)
            ax.plot(lrs, [by_lr[x] for x in lrs], label=f"width {width}", **style)
            ax.plot([lr], [loss], marker="*", markersize=12, color=style["color"])
        ax.set_xscale("log", base=2)
        ax.set_title("μP (base width 64)" if parametrization == "mup" else "standard",
                     fontsize=10)
        ax.set_xlabel("learning rate")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("final validation loss")
    legend_below(fig)
    save(fig, path)


@figure("mup-transfer", slow=True)
def mup_transfer():
    """The reduced mup_transfer sweep: the best learning rate per width under each
    parametrization, and docs/img/mup_transfer.png."""
    import math

    from explorer.sweep import run_sweep

    report = run_sweep(mup_transfer_sweep(), db=MUP_TRANSFER_STORE, workers=2)
    best = best_learning_rates(report)
    draw_mup_transfer(best, ROOT / "docs" / "img" / "mup_transfer.png")
    widths = list(best["mup"])
    rows = ["| parametrization | " + " | ".join(f"width {w}" for w in widths)
            + " | best lr moves by |",
            "|---|" + "---|" * (len(widths) + 1)]
    for parametrization in ("standard", "mup"):
        lrs = [best[parametrization][w][0] for w in widths]
        span = round(math.log2(max(lrs) / min(lrs)))
        rows.append(f"| {parametrization} | " + " | ".join(
            f"{lr:.3g} ({best[parametrization][w][1]:.3f})" for w, lr in zip(widths, lrs))
            + f" | {span} grid step{'s' if span != 1 else ''} |")
    runs = len(report["points"])
    seconds = sum(p["costs"]["seconds_per_run"] for p in report["points"])
    note = (f"(the best learning rate per width, with its final validation loss in brackets; "
            f"`python docs/figures.py --write mup-transfer`: sweeps/mup_transfer.yaml at widths "
            f"{', '.join(map(str, widths))} and {MUP_TRANSFER_STEPS} steps, {runs} runs of one "
            f"seed, {seconds / 60:.0f} minutes of training at one thread a run, two at once, on a "
            f"{machine()} busy with other jobs)")
    return ("\n".join(rows) + f"\n\n{note}\n\n"
            "![Final validation loss against the learning rate per width, standard and μP]"
            "(docs/img/mup_transfer.png)")


LADDER_CHART = ROOT / "docs" / "img" / "ladder.png"


@figure("size-ladder", slow=True)
def size_ladder():
    """sweeps/ladder.yaml (runs what its store lacks): the fitted law per variant with its
    intervals, the difference extrapolated to extrapolate_to and the crossing, and
    docs/img/ladder.png."""
    from explorer.analysis.plots import save
    from explorer.sweep.plots import ladder_figure

    report, took, load = sweep_report("sweeps/ladder.yaml")
    save(ladder_figure(report), LADDER_CHART)
    return size_ladder_text(report, took, load, store_span(ROOT / "sweeps" / "ladder.sqlite"))


def size_ladder_text(report, took, load, span):
    """The size-ladder figure's table and notes from the sweep's JSON report; ``took``: this
    call's seconds (load average ``load`` before), ``span``: the store's first start to last end."""
    from explorer.sweep.ladder_report import ladder_table

    ladder = report["ladder"]
    header, rows = ladder_table(ladder)
    keep = [i for i, h in enumerate(header) if h]  # the unnamed column holds Δ's star
    table = ["| " + " | ".join(header[i] for i in keep) + " |",
             "|---|" + "---:|" * (len(keep) - 1)]
    for row in rows:
        cells = [row[i] for i in keep]
        star = header.index("")
        cells[keep.index(star - 2)] += row[star]
        table.append("| " + " | ".join(cells) + " |")
    sizes = [r["x"] for v in ladder["variants"] for r in v["rungs"]]
    target = ladder["extrapolate_to"]
    runs = sum(p["done"] for p in report["points"])
    seconds = sum(p["costs"].get("seconds_per_run", 0) * p["done"] for p in report["points"])
    wall = (f"; {took / 60:.0f} minutes of wall time (load average {load:.1f} before)"
            if took > 60 else f"; {span / 60:.0f} minutes from the first run's start to the "
            "last one's end" if span else "")
    note = (f"`explorer sweep sweeps/ladder.yaml` (`python docs/figures.py --write size-ladder`):"
            f" a 2-block tiny GPT at widths {', '.join(map(str, ladder['ladder']['model.emb_dim']))}"
            f" ({min(sizes):,} to {max(sizes):,} non-embedding parameters), "
            f"{len(report['seeds'])} seeds, {ladder['tokens_per_param']:g} tokens per parameter; "
            f"{runs} runs, {seconds / 60:.0f} minutes of training at one thread a run, two at "
            f"once{wall}, on a {machine()}, shared with other work. Δ: the variant's predicted "
            f"loss minus the baseline's at {target:.3g} (* when its 95% interval excludes 0).")
    alphas = "; ".join(f"{v['label']} {_alpha_interval(v['fit'])}" for v in ladder["variants"])
    honest = ("What a ladder this small can say: which variant is ahead over the sizes it "
              "trained, and how fast the loss falls there. What it cannot: the intervals count "
              "only seed noise, not the choice of the law or of the training settings (alpha's "
              f"95% interval over {len(ladder['variants'][0]['rungs'])} rungs spanning a factor "
              f"{max(sizes) / min(sizes):.0f} in size: {alphas}); at "
              f"{ladder['tokens_per_param']:g} tokens per parameter every rung is short of "
              "training, so the ladder measures how fast a variant learns in a short run as "
              f"much as how it scales; and the prediction at {target / max(sizes):.0f}x the top "
              "rung rests on the law holding beyond the rungs, which nothing here checks. Read "
              "the extrapolated Δ as a hypothesis for a bigger ladder, not a result.")
    floorless = [v["label"] for v in ladder["variants"] if v["fit"] and v["fit"]["E"] < 1e-6]
    if floorless:  # E at its bound 0: a pure power law fits, the floor is not in view yet
        honest += (f" {' and '.join(floorless)}: E is fitted at its bound 0 (no floor in "
                   "view over these rungs), so its extrapolation falls as a pure power law; a "
                   "floor above 0, which bigger rungs might show, would raise its predicted "
                   "loss and shrink Δ.")
    return ("\n".join(table) + f"\n\n{note}\n\n{honest}\n\n"
            "![Final loss against non-embedding parameters per positional encoding: rungs with "
            "95% CIs, fits with 95% bands, extrapolation dashed](docs/img/ladder.png)")


def _alpha_interval(fit):
    low_high = (fit or {}).get("intervals", {}).get("alpha")
    return f"[{low_high[0]:.2f}, {low_high[1]:.2f}]" if low_high else "no fit"


def store_span(path):
    """Seconds from the first run's start to the last run's end in a sweep store (None without
    finished runs)."""
    import sqlite3

    if not Path(path).exists():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        first, last = db.execute("SELECT MIN(started), MAX(finished) FROM runs "
                                 "WHERE state = 'done'").fetchone()
    return last - first if first and last else None


@figure("adaptive-seeds")
def adaptive_seeds():
    """Adaptive seeds (explorer.sweep.sequential) on 1,000 simulated sweeps per true
    difference, seeds: {min: 3, max: 16}: how often a point is called different, with how many
    seeds; and what a t-test at every look would do instead."""
    import numpy as np
    from scipy.stats import t

    from explorer.sweep.sequential import simulate

    rows = ["| true difference (in seed sds) | called \"differs\" | mean seeds "
            "| stopped before 16 |",
            "|---:|---:|---:|---:|"]
    for effect in (0.0, 0.5, 1.0, 1.5, 2.0):
        differences = np.random.default_rng(22).normal(effect, 1.0, (1000, 16))
        rejected, used, _ = simulate(differences, min_seeds=3)
        rows.append(f"| {effect:g} | {rejected.mean():.1%} | {used.mean():.1f} | "
                    f"{(used < 16).mean():.0%} |")
        if effect == 0.0:
            n = np.arange(3, 17)
            means = np.cumsum(differences, axis=1)[:, 2:] / n
            sds = np.array([differences[:, :k].std(axis=1, ddof=1) for k in n]).T
            peeking = (np.abs(means / (sds / np.sqrt(n))) > t.ppf(0.975, n - 1)).any(axis=1)
    return ("\n".join(rows) + f"\n\nWith no true difference, a 95% t-test at every look from 3 "
            f"to 16 seeds would call {peeking.mean():.1%} of the points different.")


PROBE = ["probe", "tiny", "--set", "model.n_layers=2"]  # the default suite (mad), 3 seeds


@figure("probe-mad", slow=True)
def probe_mad():
    """The default probe of a 2-block, 64-wide tiny model from an empty store: its --dry-run
    prediction, then the run, timed, with the machine's load (other processes share the cores)."""
    import time

    with tempfile.TemporaryDirectory() as folder, in_folder(folder):
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        code, out, err = cli(*PROBE, "--dry-run")
        assert code == 0, err
        dry = time.perf_counter() - start
        predicted = next(line for line in out.splitlines() if line.startswith("estimated wall"))
        start = time.perf_counter()
        code, out, err = cli(*PROBE, "--plots", str(ROOT / "docs" / "img" / "probe_mad"))
        took = time.perf_counter() - start
        load_after = os.getloadavg()[0]
        assert code == 0, err
    profile = out.split("\n", 3)[3].strip()  # the table, without the store's temporary path
    return (f"{fenced(f'$ explorer {chr(32).join(PROBE)}' + chr(10) + profile)}\n\n"
            f"(108 runs, 2 workers: {took / 60:.1f} minutes on a {machine()}, from an empty "
            f"store, with a load average of {load_before:.1f} before and {load_after:.1f} after "
            f"(other processes shared the 2 cores); `--dry-run` took {dry:.0f} s and "
            f"predicted: {predicted.split(': ', 1)[1].split(' (')[0]})\n\n"
            "![Accuracy against difficulty per task, 95% CI band](docs/img/probe_mad/profile.png)")


@figure("gradflow-picture", slow=True)
def gradflow_picture():
    """docs/img/gradflow.png: drawn by the command PICTURES gives it (README quotes it)."""
    draw_pictures(["docs/img/gradflow.png"])
    return ("![Gradient flow per block, with and without shortcut connections]"
            "(docs/img/gradflow.png)")


COMPARE_PAGE = ["compare", "specs/gpt2_small.yaml", "specs/ablations/no_shortcut.yaml",
                "specs/ablations/rmsnorm.yaml", "specs/ablations/tied.yaml",
                "--only", "params,gradflow", "--html", "ablations.html"]


@figure("compare-page", slow=True)
def compare_page():
    """docs/img/compare_page.png: a compare page, the whole of it at 1280 px in headless
    Chromium (tests/helpers/chromium.py); about 3 minutes of CPU, most of it gradflow."""
    sys.path.insert(0, str(ROOT))
    from tests.helpers.chromium import Chromium, find_chromium

    executable = find_chromium()
    if executable is None:
        raise SystemExit("compare-page needs Chromium: apt-get install chromium")
    with tempfile.TemporaryDirectory() as folder, in_folder(folder):
        # The page's provenance shows the command as README gives it: specs/ and ablations.html
        # relative to where it ran.
        os.symlink(ROOT / "specs", "specs")
        code, _, err = cli(*COMPARE_PAGE)
        assert code == 0, err
        with Chromium(executable) as browser:
            png = browser.open("ablations.html", 1280).screenshot(full_page=True)
    (ROOT / "docs" / "img" / "compare_page.png").write_bytes(png)
    return ("![A compare page: spec differences, figures with differences, charts]"
            f"(docs/img/compare_page.png)\n\n(`explorer {' '.join(COMPARE_PAGE)}`.)")


@figure("sweep-overhead", slow=True)
def sweep_overhead():
    import json
    import subprocess

    done = subprocess.run([sys.executable, "benchmarks/sweep_overhead.py"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    f = json.loads(done.stderr[done.stderr.index("{"):])
    rows = [f"| {name} | {m['wall_seconds']:.1f} s | {m['ideal_seconds']:.1f} s | "
            f"{m['overhead']:.1%} | {m['overhead_per_run_seconds']:.2f} s |"
            for name, m in ((n, f[n]) for n in ("local", "ray") if n in f)]
    ray = (f" Starting the local Ray took {f['ray_start_seconds']:.1f} s, not counted."
           if "ray_start_seconds" in f else "")
    return (f"`python benchmarks/sweep_overhead.py`: 16 tiny runs, {f['workers']} workers x 1 "
            f"thread, {f['steps']} steps each, on a {machine()} (load average "
            f"{f['load_before'][0]:.1f} before). Ideal = the runs' own time / the workers.{ray}"
            "\n\n| executor | wall | ideal | overhead | per run |\n|---|---:|---:|---:|---:|\n"
            + "\n".join(rows))


@figure("sweep-store", slow=True)
def sweep_store():
    """benchmarks/sweep_store.py: a 10,000-run store, best of 3 per step (under a minute)."""
    import json
    import subprocess

    done = subprocess.run([sys.executable, "benchmarks/sweep_store.py", "--repeat", "3"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    f = json.loads(done.stderr[done.stderr.index("{"):])
    rows = [("make_plan (500 points, 10,000 run keys)", f["plan"]),
            ("what is left to run (the driver's and --dry-run's look)", f["remaining"]),
            ("a start's own look under the lock (add, reset, to do)", f["resume"]),
            ("writing one result (start + finish, synchronous=FULL)", f["write_one"]),
            ("`--status`, in process", f["status"]),
            ("`--status`, the whole command (a fresh process)", f["status_command"]),
            ("the report, built and printed", f["report"]),
            ("the HTML page (table, charts)", f["page"]),
            ("`--dry-run`'s estimate", f["dry_run"])]
    return (f"`python benchmarks/sweep_store.py`: {f['runs']:,} runs ({f['points']} points x "
            f"{f['runs'] // f['points']} seeds, {f['store_bytes'] / 2**20:.0f} MB store) on a "
            f"{machine()}, shared (load average {f['load_before'][0]:.1f}); best of "
            f"{f['repeat']}.\n\n| step | seconds |\n|---|---:|\n"
            + "\n".join(f"| {what} | {seconds:.3f} |" for what, seconds in rows)
            + f"\n\nThe page: {f['page_bytes'] / 2**20:.1f} MB.")


@figure("real-models", slow=True)
def real_models():
    sys.path.insert(0, str(ROOT / "docs"))
    import real_models as script

    return script.table()


@figure("shape-only", slow=True)
def shape_only():
    """Shape-only builds and 100-point dry-runs beside `import torch` (benchmarks/shape_only.py,
    about two minutes): wall time and peak RSS of each command in a fresh process."""
    import runpy

    return runpy.run_path(str(ROOT / "benchmarks" / "shape_only.py"))["measure"]()[0]


# -- pictures ----------------------------------------------------------------------------------

# README's pictures that explorer draws: the file -> the command that draws it (its --plots DIR
# writes one NAME.png per chart). README quotes each command beside its picture (tested); they
# train whole GPT-2 smalls, so only `--pictures` redraws them (about 1.5 minutes on 2 cores).
PICTURES = {
    "docs/img/gradflow.png": ["compare", "specs/gpt2_small.yaml",
                              "specs/ablations/no_shortcut.yaml", "--set", "components.norm=none",
                              "--only", "gradflow", "--plots", "docs/img"],
}


def draw_pictures(paths=None):
    for path, args in PICTURES.items():
        if paths is not None and path not in paths:
            continue
        with in_folder(ROOT):
            code, out, err = cli(*args)
        if code != 0 or f"wrote {path}" not in out:
            raise SystemExit(f"{path}: explorer {' '.join(args)} failed ({code}): {err.strip()}")
        print(f"drew {path}", file=sys.stderr)


# -- the README ---------------------------------------------------------------------------------

MARKER = re.compile(r"<!-- figure: ([\w-]+) -->\n(.*?)\n<!-- /figure: \1 -->", re.S)


def readme_figures(text=None):
    """{name: the text README holds between its markers}."""
    return {m.group(1): m.group(2) for m in MARKER.finditer(text or README.read_text())}


def compute(name):
    function, _ = FIGURES[name]
    sys.path.insert(0, str(ROOT))
    return function().rstrip()


def write(names):
    text = README.read_text()
    for name in names:
        value = compute(name)
        text, count = re.subn(rf"(<!-- figure: {name} -->\n).*?(\n<!-- /figure: {name} -->)",
                              lambda m: m.group(1) + value + m.group(2), text, flags=re.S)
        if not count:
            raise SystemExit(f"README.md has no markers for figure {name!r}")
        print(f"wrote {name}", file=sys.stderr)
    README.write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME")
    parser.add_argument("--write", action="store_true", help="recompute into README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if a figure differs")
    parser.add_argument("--fast", action="store_true", help="only the fast figures")
    parser.add_argument("--show", action="store_true", help="print the figures")
    parser.add_argument("--pictures", action="store_true",
                        help="redraw README's pictures (PICTURES), nothing else")
    args = parser.parse_args(argv)
    if args.pictures:
        draw_pictures()
        return 0
    unknown = [n for n in args.names if n not in FIGURES]
    if unknown:
        raise SystemExit(f"unknown figure {unknown[0]!r}; figures: {', '.join(FIGURES)}")
    names = args.names or [n for n, (_, slow) in FIGURES.items() if not (args.fast and slow)]
    if args.write:
        write(names)
        return 0
    if args.show:
        for name in names:
            print(compute(name))
        return 0
    current, stale = readme_figures(), []
    for name in names:
        if FIGURES[name][1] and not args.names:
            print(f"{name}: slow, not recomputed ({'in README' if name in current else 'MISSING'})")
            continue
        ok = current.get(name) == compute(name)
        print(f"{name}: {'up to date' if ok else 'DIFFERS' if name in current else 'MISSING'}")
        stale += [] if ok else [name]
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
