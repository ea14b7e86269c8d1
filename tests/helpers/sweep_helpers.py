"""Tiny sweeps for the sweep tests: a 1-block byte-level model on a short corpus, runs of a
fraction of a second (or a second or two where a test must catch runs in flight)."""

import sqlite3
import time

import yaml

# vocab_size 256: the bytes tokenizer's (a smaller vocabulary is a load-time error).
TINY = {"name": "micro", "seed": 123, "tokenizer": "bytes",
        "model": {"vocab_size": 256, "context_length": 32, "emb_dim": 16, "n_heads": 2,
                  "n_layers": 1, "drop_rate": 0.0}}
TRAIN = {"batch_size": 4, "seq_len": 16, "lr": 3.0e-3, "eval_every": 10, "eval_tokens": 256,
         "corpus": "corpus.txt"}
CORPUS = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * i % 97}.\n"
                 for i in range(300))

# An activation that turns NaN from its at-th training forward: a run that diverges on cue.
NAN_PLUGIN = '''
import torch
from torch import nn

import explorer


class NanAfter(nn.Module):
    def __init__(self, at):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls >= self.at:
                return x * float("nan")
        return torch.relu(x)


@explorer.hookimpl
def explorer_components():
    return [explorer.Component("activation", "nan_after", lambda ctx, at: NanAfter(at),
                               (explorer.Param("at", int, 3),), "NaN from the at-th step")]
'''


def write_sweep(folder, grid=None, seeds=(1, 2), steps=20, name="sweep.yaml", spec=None,
                train=None, **extra):
    """Write the base spec, the corpus and a sweep file into ``folder``; return its path."""
    (folder / "corpus.txt").write_text(CORPUS)
    (folder / "micro.yaml").write_text(yaml.safe_dump(spec or TINY, sort_keys=False))
    doc = {"base": "micro.yaml",
           "grid": grid if grid is not None else {"components.norm": ["layernorm", "rmsnorm"]},
           "seeds": list(seeds), "train": {**TRAIN, **(train or {})},
           "budget": {"steps": steps}, **extra}
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def outcome(key, loss, state="done", failure=None, reason=None):
    """A run's outcome as a worker reports it, written by hand: no training."""
    curve = [{"step": 0, "tokens": 0, "train_loss": 5.5, "val_loss": 5.5},
             {"step": 20, "tokens": 1280, "train_loss": loss + 0.1, "val_loss": loss}]
    metrics = {"final_val_loss": loss, "best_val_loss": loss, "best_step": 20,
               "best_tokens": 1280, "unigram_baseline": 3.0, "tokens_per_second": 1000.0,
               "train_seconds": 1.28, "eval_seconds": 0.1, "steps": 20, "tokens_seen": 1280,
               "parameters": 11968, "threads": 1, "training_flops_per_token": 46080,
               "memory_bytes": 10**6}
    return {"key": key, "state": state, "failure": failure, "reason": reason, "seconds": 1.5,
            "host": "here", "worker": "4242", "metrics": metrics,
            "result": {"curve": curve, "final_val_loss": loss}}


def write_mid_sweep(folder):
    """A sweep caught mid-way, its store written by hand: three points, two seeds each.
    layernorm (the baseline) and rmsnorm are done, rmsnorm 0.1 lower on both seeds (a
    significant difference); none has one run done and one left running by a driver that died."""
    from explorer.sweep import load_sweep, make_plan
    from explorer.sweep.store import Store

    path = write_sweep(folder, grid={"components.norm": ["layernorm", "rmsnorm", "none"]})
    plan = make_plan(load_sweep(path))
    key = {(r.point.label, r.seed): r.key for r in plan.runs}
    store = Store(path.with_suffix(".sqlite"))
    with store.driver_lock():
        store.add(plan, 1)
        for (label, seed), loss in {("norm=layernorm", 1): 2.0, ("norm=layernorm", 2): 2.2,
                                    ("norm=rmsnorm", 1): 1.9, ("norm=rmsnorm", 2): 2.1,
                                    ("norm=none", 1): 2.5}.items():
            store.start(key[(label, seed)])
            store.finish(outcome(key[(label, seed)], loss))
        store.start(key[("norm=none", 2)])
    store.close()
    return path


def rows(db, columns=("state", "failure", "attempts", "finished", "worker")):
    """key -> the run's ``columns`` (a tuple) straight from the SQLite file."""
    try:
        with sqlite3.connect(db) as conn:
            return {key: tuple(rest) for key, *rest in conn.execute(
                f"SELECT key, {', '.join(columns)} FROM runs")}
    except sqlite3.OperationalError:  # the driver has not created the table yet
        return {}


def wait_for(condition, timeout=120, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def write_grid_sweep(folder, rates, seeds, loss=None):
    """A sweep of 2 norms x ``rates`` learning rates x ``seeds`` seeds, its store filled by hand
    through the store's API: every run done, its final loss ``loss(point_index, seed)``
    (default: 2 - point/1000 + seed/100). Returns (sweep path, plan)."""
    from explorer.sweep import load_sweep, make_plan
    from explorer.sweep.store import Store

    loss = loss or (lambda index, seed: 2.0 - index / 1000 + seed / 100)
    grid = {"components.norm": ["layernorm", "rmsnorm"],
            "train.lr": [round(1e-3 * (1 + i / 10), 6) for i in range(rates)]}
    path = write_sweep(folder, grid=grid, seeds=range(1, seeds + 1))
    plan = make_plan(load_sweep(path))
    store = Store(path.with_suffix(".sqlite"))
    store.db.execute("PRAGMA synchronous=OFF")  # a test's store: no fsync per run
    with store.driver_lock():
        store.add(plan, 1)
        for run in plan.runs:
            store.start(run.key)
            store.finish(outcome(run.key, loss(run.point.index, run.seed)))
    store.close()
    return path, plan
