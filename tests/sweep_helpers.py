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


def rows(db):
    """key -> (state, failure, attempts, finished, worker) straight from the SQLite file."""
    try:
        with sqlite3.connect(db) as conn:
            return {key: tuple(rest) for key, *rest in conn.execute(
                "SELECT key, state, failure, attempts, finished, worker FROM runs")}
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
