#!/usr/bin/env python
"""Linear-time mixers against softmax attention: a training step, and generation per token at
two context lengths (not part of the test suite: no test asserts a time).

    python benchmarks/mixers.py            # about 3 minutes on 2 cores
    python benchmarks/mixers.py --quick    # fewer repeats

The models: 4 blocks, width 256, 4 heads of 64, rmsnorm, glu (silu), rope, byte tokens; the
token mixer is ``gated_deltanet`` (its defaults: 4 value and key heads of 64, conv 4, chunks of
64), ``mamba2`` (its defaults: inner width 512 in 8 heads of 64, state size 128, one group,
conv 4, chunks of 256) or ``gqa`` with 4 KV heads (softmax attention, torch's sdpa kernel).
fp32, CPU, seed 123.

- Training step: forward in train mode at batch 4 x 512, cross-entropy, backward, AdamW step
  (explorer's training loop's AdamW), gradients set to None. The models take turns
  (benchmarks/timing.py's round_robin, which retakes runs during which other processes were
  busy); the median of the runs.
- Generation: a prompt of T tokens (T = 256, then 4096) goes through the model with a
  ModelCache (untimed), then 32 single tokens are fed one at a time, as explorer.generate does
  (``last_only``); the time per token is the median over the runs. Softmax attention reads a KV
  cache of T tokens at every step; gated DeltaNet updates a state of a fixed size.

Prints a markdown table and writes benchmarks/mixers.json.
"""

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from timing import GUARD, NOISY_RUNS, log, median, round_robin, timed

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BATCH, TRAIN_T = 4, 512
CONTEXTS = (256, 4096)
NEW_TOKENS = 32
MIXERS = {"gated_deltanet": {"name": "gated_deltanet"}, "mamba2": {"name": "mamba2"},
          "softmax (gqa)": {"name": "gqa", "n_kv_heads": 4, "out_bias": False}}


def build(attention):
    import explorer

    doc = {"name": "bench", "seed": 123, "tokenizer": "bytes",
           "model": {"vocab_size": 256, "context_length": CONTEXTS[-1] + NEW_TOKENS,
                     "emb_dim": 256, "n_heads": 4, "n_layers": 4, "qkv_bias": False,
                     "drop_rate": 0.0},
           "components": {"attention": attention, "norm": "rmsnorm", "ffn": "glu",
                          "activation": "silu", "positional": "rope"}}
    return explorer.build_model(_spec(doc))


def _spec(doc):
    import tempfile

    import yaml

    import explorer

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(doc, f)
    try:
        return explorer.load_spec(f.name)
    finally:
        os.unlink(f.name)


def training_steps(models, repeats):
    import torch
    from torch.nn import functional as F

    from explorer.training.optimizers import adamw

    tokens = torch.randint(0, 256, (BATCH, TRAIN_T + 1), generator=torch.Generator().manual_seed(0))

    def step_of(model):
        model.train()
        optimizer = adamw(model.parameters(), 1e-3, 0.1)

        def step():
            logits = model(tokens[:, :-1])
            F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return step

    times = round_robin({name: step_of(m) for name, m in models.items()}, repeats)
    return {name: median(t) for name, t in times.items()}


def per_token(model, context, repeats):
    """Median seconds per generated token after a prompt of ``context`` tokens."""
    import torch

    from explorer.model.kv_cache import ModelCache

    model.eval()
    prompt = torch.randint(0, 256, (1, context), generator=torch.Generator().manual_seed(1))
    runs = []
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first is a warm-up
            cache = ModelCache.for_model(model, context + NEW_TOKENS)
            logits = model(prompt, cache=cache, last_only=True)

            def steps():
                nonlocal logits
                for _ in range(NEW_TOKENS):
                    token = logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
                    logits = model(token, cache=cache, last_only=True)

            seconds, _ = timed(steps)
            runs.append(seconds / NEW_TOKENS)
    return median(runs[1:])


def main():
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--max-others", type=float, default=GUARD["noise"],
                        help="retake a training run during which other processes used more "
                             "than this share of the cores (1 = never: a machine shared on "
                             "purpose)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch threads (1 on a busy machine: two threads on two busy "
                             "cores wait on each other at every op)")
    args = parser.parse_args()
    GUARD["noise"] = args.max_others
    repeats = 3 if args.quick else 7
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    models = {name: build(attention) for name, attention in MIXERS.items()}
    log(f"threads {torch.get_num_threads()}, training steps at batch {BATCH} x {TRAIN_T}")
    train = training_steps(models, repeats)
    generation = {}
    for name, model in models.items():
        for context in CONTEXTS:
            log(f"generation, {name}, after {context} tokens")
            generation[(name, context)] = per_token(model, context, repeats)
    rows = ["| mixer | training step (s), 4 x 512 | vs softmax | ms per token after 256 "
            "| after 4096 | 4096 / 256 |", "|---|---:|---:|---:|---:|---:|"]
    soft = train["softmax (gqa)"]
    for name in MIXERS:
        short, long = generation[(name, 256)], generation[(name, 4096)]
        rows.append(f"| {name} | {train[name]:.3f} | {train[name] / soft:.2f}x | "
                    f"{1e3 * short:.2f} | {1e3 * long:.2f} | {long / short:.2f}x |")
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    machine = (f"{cpu}, {os.cpu_count()} cores ({args.threads} torch thread"
               f"{'s' if args.threads > 1 else ''}), torch {torch.__version__}, fp32")
    load_after = os.getloadavg()[0]
    noisy = (f"{len(NOISY_RUNS)} training runs with other processes above "
             f"{GUARD['noise']:.0%}; load average {load_before:.1f} before, {load_after:.1f} after")
    print("\n".join(rows))
    print(f"\n{machine}; {noisy}")
    (HERE / "mixers.json").write_text(json.dumps({
        "machine": machine, "arguments": " ".join(sys.argv[1:]),
        "load_average": [load_before, load_after], "noisy_runs": len(NOISY_RUNS),
        "train_seconds": train,
        "generation_seconds_per_token": {f"{n} T={c}": s for (n, c), s in generation.items()},
        "table": rows}, indent=1))


if __name__ == "__main__":
    main()
