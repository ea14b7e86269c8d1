#!/usr/bin/env python
"""Benchmark explorer against its peers, side by side in one process, as ratios.

    python benchmarks/run.py              # full run (about 5 minutes on 2 idle CPU cores)
    python benchmarks/run.py --quick      # fewer repeats, no extra variants (about 2 minutes)
    python benchmarks/run.py --compile    # also a torch.compile'd explorer forward row

Peers (the ``bench`` extra): the book's ``llms_from_scratch.ch04`` (GPTModel with
GPT_CONFIG_124M, generate_text_simple) and Hugging Face ``transformers`` (a randomly initialised
GPT2LMHeadModel; no weights are downloaded). Everything runs in this process, on the same
threads, and the implementations take turns (round-robin, alternating order); each figure is
the median of several runs after a warm-up. A run during which other processes took more than
10% of the cores is taken again (a shared machine makes two torch threads wait on each other).

Measured: forward tokens/s of gpt2_small at batch 1 (eval, fp32, inference mode) and its MFU
against this machine's fp32 matmul peak (a 4096^3 torch.mm timed in the same rounds); greedy
generation tokens/s (200 new tokens from an 8-token prompt); model build time; meta-device
analysis time of gpt2_xl and gpt3_175b (in process and through the CLI, with its peak RSS);
``explorer --help`` wall time and ``python -X importtime`` of the CLI. Results are printed and
written to benchmarks/latest.json and latest.md. Not part of the test suite.
"""

import argparse
import gc
import importlib.util
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from models import ROOT, attention_impls, build_book, build_explorer, build_hf, forward_fn
from timing import (GUARD, NOISE, NOISY_RUNS, PEAK, RETRIES, log, matmul_peak, median,
                    peak_case, peak_flops, round_robin, timed, wait_quiet)

HERE = Path(__file__).resolve().parent
PROMPT = [6109, 3626, 6100, 345, 2651, 11, 530, 2239]  # 8 GPT-2 token ids
SEQ_LENS = (128, 512, 1024)
NEW_TOKENS = 200

# The targets on the 2-core CPU: (figure, threshold, what it compares).
TARGETS = [
    ("train dropout 0.1 vs hf sdpa", 1.1, "explorer / HF training steps per second, dropout 0.1"),
    ("train dropout 0.0 vs hf sdpa", 1.1, "explorer / HF training steps per second, dropout 0"),
    ("train MFU dropout 0.1", 0.70, "explorer training FLOP/s / measured fp32 matmul peak"),
    ("train MFU dropout 0.0", 0.70, "explorer training FLOP/s / measured fp32 matmul peak"),
    ("forward T=1024 vs book", 1.5, "explorer / book GPTModel tokens/s at T=1024"),
    ("forward T=1024 vs hf sdpa", 1.0, "explorer / HF GPT2 (sdpa) tokens/s at T=1024"),
    ("generation vs book", 5.0, "explorer.generate / generate_text_simple tokens/s"),
    ("generation vs hf", 1.3, "explorer.generate / HF generate(use_cache=True) tokens/s"),
    ("MFU T=128", 0.70, "explorer forward FLOP/s at T=128 / measured fp32 matmul peak"),
    ("explorer --help", 0.5, "seconds (at most)"),
]
PARTS = ("forward", "generation", "train", "build", "meta", "startup")


# --------------------------------------------------------------------------- machine

def machine_info(threads):
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("transformers", "llms-from-scratch"):
        try:
            from importlib.metadata import version
            versions[dist] = version(dist)
        except Exception:
            versions[dist] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads,
            "interop_threads": torch.get_num_interop_threads(), "platform": platform.platform(),
            "versions": versions, "loadavg_start": os.getloadavg()}


# --------------------------------------------------------------------------- figures

def flops_per_token(seq_len):
    """explorer's closed form (flops analysis): 2*N_matmul + 4*L*s*h (full s x s) + 2*h*V."""
    import explorer

    try:
        spec = explorer.load_spec(ROOT / "specs" / "gpt2_small.yaml", overrides=[
            f"analyses.flops.seq_len={seq_len}", "analyses.flops.measure=false"])
        return explorer.analyze(spec, only=["flops"])["analyses"]["flops"][
            "forward_per_token"]["total"]
    except (explorer.ExplorerError, KeyError):
        pass  # an explorer without the flops analysis
    # Fallback, the same closed form for GPT-2 small (book layout: no qkv bias, untied head).
    L, h, V = 12, 768, 50257
    n_matmul = L * (4 * h * h + 8 * h * h)
    return 2 * n_matmul + 4 * L * seq_len * h + 2 * h * V


def bench_forward(models, seq_lens, repeats):
    """tokens/s per model and T; MFU against a 4096^3 torch.mm timed in the same rounds.

    The matmul takes its turn among the models, so the peak is measured under the same load
    as the forwards it divides (a shared machine's speed drifts from minute to minute).
    """
    import torch

    matmul = peak_case()
    results = {}
    for t in seq_lens:
        x = torch.randint(0, 50257, (1, t), generator=torch.Generator().manual_seed(t))
        log(f"  forward T={t}: {', '.join(models)}")
        cases = {name: forward_fn(kind, m, x) for name, (kind, m) in models.items()}
        cases[PEAK] = matmul
        compile_s = {name: timed(fn)[0] for name, fn in cases.items() if "compiled" in name}
        times = round_robin(cases, repeats)
        peak = peak_flops(times.pop(PEAK))
        fpt = flops_per_token(t)
        results[t] = {}
        for name, ts in times.items():
            sec = median(ts)
            results[t][name] = {"seconds": ts, "median_s": sec, "tokens_per_s": t / sec,
                                "mfu": fpt * t / sec / peak, "flops_per_token": fpt,
                                "peak_flops_per_s": peak}
            if name in compile_s:
                results[t][name]["first_call_s"] = compile_s[name]
    return results


def bench_generate(models, repeats, book_repeats):
    """Greedy, 200 new tokens from the 8-token prompt, batch 1."""
    import torch

    import explorer
    from llms_from_scratch.ch04 import generate_text_simple

    idx = torch.tensor([PROMPT])
    gen_params = inspect.signature(explorer.generate).parameters
    has_cache = "use_cache" in gen_params
    cases, outputs = {}, {}

    def case(name, fn):
        def run(n=NEW_TOKENS):
            outputs[name] = fn(n)
        cases[name] = run

    ex = models["explorer"][1]
    case("explorer", lambda n: explorer.generate(ex, idx, n))
    if models.get("hf sdpa"):
        hf = models["hf sdpa"][1]
        mask = torch.ones_like(idx)
        case("hf sdpa", lambda n: hf.generate(
            idx, attention_mask=mask, do_sample=False, use_cache=True, max_new_tokens=n,
            min_new_tokens=n, pad_token_id=50256))
    book = models["book"][1]
    case("book", lambda n: generate_text_simple(book, idx, n, context_size=1024))

    log("  generation warm-up")
    with torch.inference_mode():
        for fn in cases.values():
            fn(4)
    results = {}
    slow = {"book"} if book_repeats != repeats else set()
    fast = {k: v for k, v in cases.items() if k not in slow}
    with torch.inference_mode():
        log(f"  generation: {', '.join(fast)} x{repeats}")
        times = round_robin(fast, repeats, warmup=0)
        if slow:
            log(f"  generation: book x{book_repeats}")
            times.update(round_robin({k: cases[k] for k in slow}, book_repeats, warmup=0))
    for name, ts in times.items():
        out = outputs[name]
        new = out.shape[1] - len(PROMPT)
        results[name] = {"seconds": ts, "median_s": median(ts), "new_tokens": new,
                         "tokens_per_s": new / median(ts)}
    same = torch.equal(outputs["explorer"], outputs["book"])
    info = {"explorer_generate_has_use_cache": has_cache,
            "explorer_tokens_equal_book": bool(same)}
    return results, info


def bench_generate_nocache(model, repeats):
    """explorer.generate(use_cache=False): the cost of recomputing the context every token."""
    import torch

    import explorer

    idx = torch.tensor([PROMPT])
    with torch.inference_mode():
        ts = round_robin({"nocache": lambda: explorer.generate(model, idx, NEW_TOKENS,
                                                               use_cache=False)},
                         repeats, warmup=0)["nocache"]
    return {"seconds": ts, "median_s": median(ts), "new_tokens": NEW_TOKENS,
            "tokens_per_s": NEW_TOKENS / median(ts)}


def bench_build(repeats):
    cases = {"explorer": build_explorer, "book": build_book, "hf sdpa": build_hf}
    times = round_robin({k: (lambda f=f: f()) for k, f in cases.items()}, repeats)
    return {k: {"seconds": v, "median_s": median(v)} for k, v in times.items()}


def bench_meta(repeats):
    import explorer

    results = {}
    for name in ("gpt2_xl", "gpt3_175b"):
        path = ROOT / "specs" / f"{name}.yaml"
        box = {}

        def run():
            box["report"] = explorer.analyze(explorer.load_spec(path), only=["params", "memory"])
        ts = round_robin({name: run}, repeats)[name]
        report = box["report"]
        params = report["analyses"].get("params", {})
        results[name] = {"seconds": ts, "median_s": median(ts),
                         "failures": report["failures"],
                         "parameters": _find_number(params, ("total", "parameters", "n_params"))}
    return results


def _find_number(d, keys):
    if isinstance(d, dict):
        for k in keys:
            if isinstance(d.get(k), (int, float)):
                return d[k]
    return None


# --------------------------------------------------------------------------- subprocesses

def explorer_cmd():
    script = shutil.which("explorer")
    return [script] if script else [sys.executable, "-m", "explorer"]


# Times one command from a small launcher: a child forked from this process (gigabytes of
# models) would report this process's RSS as its own peak, since Linux keeps the pre-exec peak.
_LAUNCHER = """import resource, subprocess, sys, time
start = time.perf_counter()
rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)
"""


def run_child(argv):
    """(wall seconds, peak RSS bytes, return code, stderr) of one command."""
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *argv], cwd=ROOT,
                          capture_output=True, text=True)
    wall, rss_kb, rc = proc.stdout.split()
    return float(wall), int(rss_kb) * 1024, int(rc), proc.stderr


def bench_children(argvs, repeats, warmup=1):
    """Wall time and peak RSS per command, round-robin, after ``warmup`` runs (file cache)."""
    results = {name: {"seconds": [], "rss": [], "rc": []} for name in argvs}
    for r in range(repeats + warmup):
        for name, argv in argvs.items():
            wall, rss, rc, err = run_child(argv)
            if r >= warmup:
                results[name]["seconds"].append(wall)
                results[name]["rss"].append(rss)
                results[name]["rc"].append(rc)
            if rc:
                results[name]["stderr"] = err[-500:]
    for v in results.values():
        v["median_s"] = median(v["seconds"])
        v["peak_rss_bytes"] = max(v["rss"]) if v["rss"] else None
    return results


def importtime(module="explorer.cli", top=8):
    """Parse ``python -X importtime -c 'import MODULE'``: total, top entries, torch imported?"""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                          cwd=ROOT, capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        fields = line.split(":", 1)[1].split("|")
        self_us, cum_us, name = int(fields[0]), int(fields[1]), fields[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append({"module": name.strip(), "self_us": self_us, "cumulative_us": cum_us,
                     "depth": depth})
    modules = {r["module"] for r in rows}
    # A module's imports are printed before it: the rows since the previous top-level entry.
    subtree, current = [], []
    for r in rows:
        current.append(r)
        if r["depth"] == 0:
            if r["module"] == module:
                subtree = current
            current = []
    children = sorted((r for r in subtree if r["depth"] == 1), key=lambda r: -r["cumulative_us"])
    top_level = sorted((r for r in rows if r["depth"] == 0), key=lambda r: -r["cumulative_us"])
    total = sum(r["cumulative_us"] for r in rows if r["depth"] == 0)
    return {"module": module, "total_us": total, "n_modules": len(rows),
            "imports_torch": "torch" in modules, "top_level": top_level[:3],
            "top": children[:top]}


# --------------------------------------------------------------------------- report

def ratio(a, b):
    return a / b if a and b else float("nan")


def summarise(res):
    """Ratios explorer / peer, and the issue's targets met or not."""
    r = {}
    for t, row in (res.get("forward") or {}).items():
        ex = row["explorer"]["tokens_per_s"]
        for peer in row:
            if peer != "explorer":
                r[f"forward T={t} vs {peer}"] = ratio(ex, row[peer]["tokens_per_s"])
        r[f"MFU T={t}"] = row["explorer"]["mfu"]
    gen = res.get("generation") or {}
    for peer in gen:
        if peer != "explorer":
            r[f"generation vs {peer.replace(' sdpa', '')}"] = ratio(
                gen["explorer"]["tokens_per_s"], gen[peer]["tokens_per_s"])
    for drop_rate, row in ((res.get("train") or {}).get("by_dropout") or {}).items():
        ex = row["explorer"]["median_s"]
        for peer, v in row.items():
            if peer != "explorer":
                r[f"train dropout {drop_rate} vs {peer}"] = ratio(v["median_s"], ex)
        r[f"train MFU dropout {drop_rate}"] = row["explorer"]["mfu"]
    if res.get("startup"):
        r["explorer --help"] = res["startup"]["children"]["explorer --help"]["median_s"]
    res["ratios"] = r
    res["targets"] = []
    for name, threshold, what in TARGETS:
        value = r.get(name)
        if value is None:
            continue
        ok = value <= threshold if name == "explorer --help" else value >= threshold
        res["targets"].append({"target": name, "value": value, "threshold": threshold,
                               "what": what, "met": bool(ok)})


def render_header(res):
    m = res["machine"]
    v = m["versions"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} CPU cores, torch.set_num_threads({m['threads']}) "
             f"(interop {m['interop_threads']}); torch {v['torch']}, transformers "
             f"{v['transformers']}, llms-from-scratch {v['llms-from-scratch']}; load average "
             f"{m['loadavg_start'][0]:.2f} at start, {res['loadavg_end'][0]:.2f} at end."]
    if res.get("peak"):
        lines.append(f"fp32 matmul peak (4096^3 torch.mm, median of {len(res['peak']['seconds'])})"
                     f": {res['peak']['flops_per_s'] / 1e9:.1f} GFLOP/s.")
    noisy = res.get("noisy_runs") or []
    kept = sum(n["kept"] for n in noisy)
    lines.append(f"Runs during which other processes used more than {GUARD['noise']:.0%} of the "
                 "cores: "
                 f"{len(noisy) - kept} taken again, {kept} kept after {RETRIES} retries"
                 + (" (those figures are noisy)." if kept else "."))
    busy = [b for b in (res.get("busy_before") or {}).values() if b is not None]
    if busy:
        lines.append(f"Other processes kept {min(busy):.0%}-{max(busy):.0%} of the cores busy "
                     "before the parts started.")
    info = res.get("generation_info") or {}
    lines.append(f"explorer attention impl (default): `{res.get('explorer_impl')}`; "
                 f"explorer.generate has use_cache: "
                 f"{info.get('explorer_generate_has_use_cache', 'n/a')}.")
    return " ".join(lines)


def render_forward(res):
    out = ["## Forward, batch 1, fp32, eval, inference mode (median; ratio = explorer / row)", "",
           "| T | model | ms | tokens/s | MFU | explorer / this |", "|---|---|---|---|---|---|"]
    peaks = []
    for t, row in res["forward"].items():
        ex = row["explorer"]["tokens_per_s"]
        for name, v in row.items():
            out.append(f"| {t} | {name} | {v['median_s'] * 1e3:,.0f} | {v['tokens_per_s']:,.0f} "
                       f"| {v['mfu']:.0%} | {ratio(ex, v['tokens_per_s']):.2f}x |")
        peaks.append(f"T={t}: {v['peak_flops_per_s'] / 1e9:.1f}")
    out += ["", "MFU = model FLOPs (explorer's closed form 2*N_matmul + 4*L*s*h + 2*h*V, full "
                "s x s attention, the same count for every model) / seconds / fp32 matmul peak, "
                "a 4096^3 torch.mm timed in the same rounds (GFLOP/s: " + ", ".join(peaks) + ")."]
    compiled = [f"T={t}: {v['first_call_s']:.0f} s" for t, row in res["forward"].items()
                for n, v in row.items() if "first_call_s" in v]
    if compiled:
        out.append("`explorer compiled` is torch.compile(model) with inductor freezing "
                   "(--compile); its first call per shape, the compilation, took "
                   + ", ".join(compiled) + ".")
    return "\n".join(out)


def render_generation(res):
    out = [f"## Greedy generation, batch 1, {NEW_TOKENS} new tokens from a {len(PROMPT)}-token "
           f"prompt", "", "| model | s | tokens/s | explorer / this |", "|---|---|---|---|"]
    gen = res["generation"]
    ex = gen["explorer"]["tokens_per_s"]
    for name, v in gen.items():
        label = {"book": "book generate_text_simple",
                 "hf sdpa": "HF generate(use_cache=True), sdpa"}.get(name, f"{name}.generate")
        out.append(f"| {label} | {v['median_s']:.2f} | {v['tokens_per_s']:.1f} "
                   f"| {ratio(ex, v['tokens_per_s']):.2f}x |")
    if res.get("generation_nocache"):
        v = res["generation_nocache"]
        out.append(f"| explorer.generate(use_cache=False) | {v['median_s']:.2f} "
                   f"| {v['tokens_per_s']:.1f} | {ratio(ex, v['tokens_per_s']):.2f}x |")
    out.append(f"\nexplorer and the book give the same greedy tokens (same seed-123 weights): "
               f"{res['generation_info']['explorer_tokens_equal_book']}.")
    return "\n".join(out)


def render_rest(res):
    out = []
    if res.get("build") or res.get("meta"):
        out += ["## Build and meta-device analysis (in process, median)", "",
                "| what | s |", "|---|---|"]
        for name, v in (res.get("build") or {}).items():
            out.append(f"| build gpt2_small: {name} | {v['median_s']:.2f} |")
        for name, v in (res.get("meta") or {}).items():
            fail = f" (failures: {v['failures']})" if v["failures"] else ""
            out.append(f"| explorer.analyze({name}, only=[params, memory]){fail} "
                       f"| {v['median_s']:.2f} |")
        out.append("")
    if res.get("startup"):
        out += ["## Startup and CLI (subprocess wall time, median)", "",
                "| command | s | peak RSS MB | rc |", "|---|---|---|---|"]
        for name, v in res["startup"]["children"].items():
            rss = v["peak_rss_bytes"] / 2 ** 20 if v["peak_rss_bytes"] else float("nan")
            out.append(f"| `{name}` | {v['median_s']:.3f} | {rss:,.0f} | {max(v['rc'] or [0])} |")
        imp = res["startup"]["importtime"]
        out += ["", f"`python -X importtime -c \"import {imp['module']}\"`: "
                    f"{imp['total_us'] / 1e3:.0f} ms of imports over {imp['n_modules']} modules; "
                    f"imports torch: {imp['imports_torch']}. Top-level entries, then what "
                    f"`{imp['module']}` imports directly:", "",
                "| module | cumulative ms |", "|---|---|"]
        for r in imp["top_level"]:
            out.append(f"| {r['module']} | {r['cumulative_us'] / 1e3:.1f} |")
        for r in imp["top"]:
            out.append(f"| &nbsp;&nbsp;{r['module']} | {r['cumulative_us'] / 1e3:.1f} |")
        out.append("")
    if res["targets"]:
        out += ["## Targets", "", "| target | measured | target | met |", "|---|---|---|---|"]
        for c in res["targets"]:
            if "MFU" in c["target"]:
                fmt = "{:.0%}".format
            elif c["target"] == "explorer --help":
                fmt = "{:.3f} s".format
            else:
                fmt = "{:.2f}x".format
            op = "<=" if c["target"] == "explorer --help" else ">="
            out.append(f"| {c['target']} | {fmt(c['value'])} | {op} {fmt(c['threshold'])} "
                       f"| {'yes' if c['met'] else 'NO'} |")
        out.append("")
    if res.get("errors"):
        out += ["## Errors", ""] + [f"- {k}: {v}" for k, v in res["errors"].items()] + [""]
    return "\n".join(out)


def to_markdown(res):
    parts = [f"# explorer benchmark ({'quick' if res['quick'] else 'full'})", "",
             render_header(res), ""]
    if res.get("forward"):
        parts += [render_forward(res), ""]
    if res.get("generation"):
        parts += [render_generation(res), ""]
    if res.get("train"):
        from training import render_train

        parts += [render_train(res["train"]), ""]
    parts.append(render_rest(res))
    return "\n".join(parts)


# --------------------------------------------------------------------------- main

def section(res, name, fn, *args, **kwargs):
    """Run one part; a failure is recorded under res["errors"] and the rest still runs.

    Before it, the share of the cores other processes keep busy is recorded (waiting up to
    --wait-quiet seconds for them to finish): figures taken on a busy machine are noisy.
    """
    busy = wait_quiet(res["wait_quiet"])
    res.setdefault("busy_before", {})[name] = busy
    log(f"[{name}] other processes: {busy:.0%} of the cores" if busy is not None else f"[{name}]")
    start = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        import traceback

        res.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
        log(traceback.format_exc())
        return None
    finally:
        res.setdefault("section_s", {})[name] = time.perf_counter() - start
        log(f"[{name}] {time.perf_counter() - start:.0f} s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats, T=128 and 1024 only, no extra variants (< 2 min)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch.set_num_threads (default: all cores)")
    parser.add_argument("--repeats", type=int, help="timed forward runs (after warm-up)")
    parser.add_argument("--out", default=str(HERE), help="folder for latest.json / latest.md")
    parser.add_argument("--compile", action="store_true",
                        help="add an 'explorer compiled' forward row: torch.compile (inductor, "
                             "freezing on) of the explorer model; compile time reported apart")
    parser.add_argument("--max-others", type=float, default=NOISE, metavar="SHARE",
                        help="take a run again when other processes used more than this share "
                             "of the cores during it (default 0.10; on a machine shared on "
                             "purpose, e.g. 0.55 with --threads 1 on 2 cores)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated parts to run, from {','.join(PARTS)} (default: all)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                        help="before each part, wait up to S seconds for other processes to "
                             "leave the cores idle (a shared machine)")
    args = parser.parse_args(argv)
    GUARD["noise"] = args.max_others
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if parts - set(PARTS):
        parser.error(f"--parts: unknown {', '.join(sorted(parts - set(PARTS)))}; choose from "
                     f"{', '.join(PARTS)}")

    missing = [dist for module, dist in (("transformers", "transformers"),
                                         ("llms_from_scratch", "llms-from-scratch"))
               if importlib.util.find_spec(module) is None]
    if missing:
        sys.exit(f"benchmarks/run.py: the peers are not installed ({', '.join(missing)}): "
                 f"pip install -e .[bench] && pip install --no-deps llms-from-scratch==1.0.19")

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    start = time.perf_counter()
    repeats = args.repeats or (3 if args.quick else 5)
    res = {"quick": args.quick, "repeats": repeats, "machine": machine_info(args.threads),
           "wait_quiet": args.wait_quiet}
    m = res["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores; torch.set_num_threads({args.threads}); "
          f"load average {m['loadavg_start'][0]:.2f}", flush=True)

    res["peak"] = section(res, "matmul peak", matmul_peak, 3)
    print(f"fp32 matmul peak: {res['peak']['flops_per_s'] / 1e9:.1f} GFLOP/s", flush=True)

    default_impl, impls = attention_impls()
    res["explorer_impl"] = default_impl

    def build_all():
        models = {"explorer": ("explorer", build_explorer())}
        if not args.quick:
            for impl in impls:
                if impl != default_impl:
                    models[f"explorer impl={impl}"] = ("explorer", build_explorer(impl))
        if args.compile:
            import torch._inductor.config

            torch._inductor.config.freezing = True  # weights as constants, prepacked for oneDNN
            models["explorer compiled"] = ("explorer", torch.compile(build_explorer()))
        models["book"] = ("book", build_book())
        models["hf sdpa"] = ("hf", build_hf("sdpa"))
        if not args.quick:
            models["hf eager"] = ("hf", build_hf("eager"))
        return models

    models = section(res, "build models", build_all) if parts & {"forward", "generation"} else {}
    seq_lens = (128, 1024) if args.quick else SEQ_LENS
    if "forward" in parts:
        res["forward"] = section(res, "forward", bench_forward, models, seq_lens, repeats)
    if res.get("forward"):
        print(render_forward(res), flush=True)
    gen = None
    if "generation" in parts:
        gen = section(res, "generation", bench_generate, models, 2 if args.quick else 3,
                      book_repeats=1 if args.quick else 2)
    res["generation"], res["generation_info"] = gen or (None, None)
    if not args.quick and gen and gen[1]["explorer_generate_has_use_cache"]:
        res["generation_nocache"] = section(res, "generation without cache",
                                            bench_generate_nocache, models["explorer"][1], 1)
    if res["generation"]:
        print(render_generation(res), flush=True)
    del models
    gc.collect()

    if "train" in parts:
        from training import bench_train, render_train

        res["train"] = section(res, "training step", bench_train, 2 if args.quick else 3,
                               compile=args.compile)
        if res["train"]:
            print(render_train(res["train"]), flush=True)
    if "build" in parts:
        res["build"] = section(res, "build times", bench_build, 1 if args.quick else 3)
    if "meta" in parts:
        res["meta"] = section(res, "meta-device analyses", bench_meta, 1 if args.quick else 3)

    def startup():
        ex = explorer_cmd()
        children = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "explorer --help": ex + ["--help"],
            "explorer plugins --help": ex + ["plugins", "--help"],
        }
        out = {"children": bench_children(children, 3 if args.quick else 5)}
        cli = {f"explorer build specs/{n}.yaml --only params,memory":
               ex + ["build", f"specs/{n}.yaml", "--only", "params,memory"]
               for n in ("gpt2_xl", "gpt3_175b")}
        out["children"].update(bench_children(cli, 1 if args.quick else 2,
                                              warmup=0 if args.quick else 1))
        out["importtime"] = importtime()
        return out

    if "startup" in parts:
        res["startup"] = section(res, "startup and CLI", startup)

    res["loadavg_end"] = os.getloadavg()
    res["noisy_runs"] = NOISY_RUNS
    res["total_s"] = time.perf_counter() - start
    summarise(res)
    md = to_markdown(res) + f"\nTotal benchmark time: {res['total_s']:.0f} s.\n"
    print()
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / "latest.md").write_text(md)
    log(f"wrote {out / 'latest.json'} and {out / 'latest.md'}")


if __name__ == "__main__":
    main()
