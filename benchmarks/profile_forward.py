#!/usr/bin/env python
"""Where a forward pass (or a generation) spends its time: torch.profiler's top ops.

    python benchmarks/profile_forward.py                       # explorer, book, HF at T=128, 1024
    python benchmarks/profile_forward.py --models explorer --seq-lens 1024 --top 20
    python benchmarks/profile_forward.py --generate 50         # generation steps instead

Same models and settings as benchmarks/run.py (gpt2_small, batch 1, fp32, eval, inference
mode, torch.set_num_threads(cores)). Prints, per model, the ops sorted by self CPU time and the
share each takes; --json writes the tables too.
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402  (benchmarks/run.py: the prompt)
from models import build_book, build_explorer, build_hf, forward_fn  # noqa: E402


BUILDERS = {
    "explorer": lambda: ("explorer", build_explorer()),
    "explorer-manual": lambda: ("explorer", build_explorer("manual")),
    "explorer-sdpa": lambda: ("explorer", build_explorer("sdpa")),
    "book": lambda: ("book", build_book()),
    "hf": lambda: ("hf", build_hf("sdpa")),
    "hf-eager": lambda: ("hf", build_hf("eager")),
}


def top_ops(fn, top, warmup=1):
    """(total self CPU ms, [(op, self ms, calls)]) of one call of ``fn`` after ``warmup``."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    rows = sorted(((e.key, e.self_cpu_time_total / 1e3, e.count) for e in events),
                  key=lambda r: -r[1])
    total = sum(r[1] for r in rows)
    del torch
    return total, rows[:top]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="explorer,book,hf",
                        help=f"comma-separated, from {', '.join(BUILDERS)}")
    parser.add_argument("--seq-lens", default="128,1024")
    parser.add_argument("--generate", type=int, default=0, metavar="N",
                        help="profile greedy generation of N new tokens instead of a forward")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(os.cpu_count())
    print(f"torch.set_num_threads({os.cpu_count()})")
    results = {}
    for name in args.models.split(","):
        kind, model = BUILDERS[name]()
        if args.generate:
            fns = {f"generate {args.generate}": generate_fn(kind, model, args.generate)}
        else:
            fns = {}
            for t in map(int, args.seq_lens.split(",")):
                x = torch.randint(0, 50257, (1, t), generator=torch.Generator().manual_seed(t))
                fns[f"T={t}"] = forward_fn(kind, model, x)
        for label, fn in fns.items():
            with torch.inference_mode():
                total, rows = top_ops(fn, args.top)
            results[f"{name} {label}"] = {"total_ms": total, "top": rows}
            print(f"\n{name} {label}: {total:,.0f} ms self CPU in all ops")
            print(f"  {'op':<44} {'self ms':>9} {'share':>6} {'calls':>6}")
            for op, ms, calls in rows:
                print(f"  {op[:44]:<44} {ms:>9,.1f} {ms / total:>6.1%} {calls:>6}")
        del model
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def generate_fn(kind, model, n):
    import torch

    import explorer
    from llms_from_scratch.ch04 import generate_text_simple

    idx = torch.tensor([run.PROMPT])
    if kind == "explorer":
        return lambda: explorer.generate(model, idx, n)
    if kind == "book":
        return lambda: generate_text_simple(model, idx, n, context_size=1024)
    mask = torch.ones_like(idx)
    return lambda: model.generate(idx, attention_mask=mask, do_sample=False, use_cache=True,
                                  max_new_tokens=n, min_new_tokens=n, pad_token_id=50256)


if __name__ == "__main__":
    main()
