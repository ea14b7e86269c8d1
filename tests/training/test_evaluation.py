"""Evaluation in bounded memory (explorer.training.loop.eval_loss): a few windows per forward and
the cross-entropy a chunk of positions at a time give the losses of the unbounded evaluation
(all of a chunk of 64 windows' logits and log-probabilities at once) to 1e-6, and its peak
memory, measured, does not grow with the windows evaluated."""

import contextlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

import explorer
from explorer.measure import resources
from explorer.measure.resources import evaluation_windows, training_need
from explorer.training import loop
from explorer.training.corpus import load_corpus, windows
from tests.helpers import ROOT


def unbounded_eval_loss(model, inputs, targets, precision=None, chunk=64):
    """The evaluation before it was bounded, as it was: 64 windows per forward under no_grad,
    the cross-entropy of all their logits at once (a float32 copy, then the log-probabilities)."""
    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(inputs), chunk):
            with precision() if precision else contextlib.nullcontext():
                logits = model(inputs[i: i + chunk])  # (n, T, V)
            total += F.cross_entropy(logits.flatten(0, 1).float(),
                                     targets[i: i + chunk].flatten(), reduction="sum").item()
    model.train(was_training)
    return total / targets.numel()


@pytest.mark.parametrize("dtype", ["float32", pytest.param("bfloat16", marks=pytest.mark.slow)])
def test_the_curve_equals_the_unbounded_evaluation_on_tiny(monkeypatch, dtype):
    """tiny trained 10 steps, evaluated 3 times on 32 windows of each split: in forwards of 4
    windows (the training batch: the 16 MiB floor lowered to let it show) and 100 positions
    of cross-entropy at a time, against one forward of all 32 windows. bfloat16: the logits are
    upcast a chunk at a time instead of at once."""
    spec = explorer.load_spec("tiny")
    config = explorer.TrainConfig(steps=10, batch_size=4, seq_len=128, eval_every=5,
                                  eval_tokens=4096, dtype=dtype)
    monkeypatch.setattr(resources, "EVAL_LOGITS_FLOOR", 0)
    monkeypatch.setattr(resources, "EVAL_LOSS_CHUNK", 100 * 256 * 4)
    calls = []
    bounded_eval = loop.eval_loss
    monkeypatch.setattr(loop, "eval_loss", lambda *args: calls.append(args[-1]) or
                        bounded_eval(*args))
    bounded = explorer.train(explorer.build_model(spec), spec, config)
    assert set(calls) == {4} and len(calls) == 6  # 4 windows per forward, 3 x 2 splits
    monkeypatch.setattr(loop, "eval_loss", lambda model, x, y, precision, windows:
                        unbounded_eval_loss(model, x, y, precision))
    unbounded = explorer.train(explorer.build_model(spec), spec, config)
    assert bounded["batch_losses"] == unbounded["batch_losses"]  # the same training
    assert [p["step"] for p in bounded["curve"]] == [0, 5, 10]
    for ours, before in zip(bounded["curve"], unbounded["curve"]):
        for key in ("train_loss", "val_loss"):
            assert ours[key] == pytest.approx(before[key], abs=1e-6)


@pytest.mark.slow  # gpt2_small's evaluation twice; run by .ci/run after the default suite
def test_gpt2_small_evaluation_equals_the_unbounded_one():
    """The issue's command's model (gpt2_small, 4 layers, seed 123) on 6 windows of 256 tokens
    of its corpus: forwards of 4 windows (its training batch) and 2, against 1 of all 6."""
    spec = explorer.load_spec("gpt2_small", overrides=["model.n_layers=4"])
    model = explorer.build_model(spec)
    text, _ = load_corpus("")  # the train analysis's default: pydoc_data.topics
    ids = torch.tensor(explorer.get_tokenizer("gpt2").encode(text[:20_000]))
    inputs, targets = windows(ids, 256, 6 * 256)
    per_forward = evaluation_windows(4, 256, spec.model.vocab_size)
    assert per_forward == 4 and len(inputs) == 6
    bounded = loop.eval_loss(model, inputs, targets, None, per_forward)
    assert bounded == pytest.approx(unbounded_eval_loss(model, inputs, targets), abs=1e-6)


EVAL_PEAK = textwrap.dedent("""
    import json, sys
    import torch
    import explorer
    from explorer.measure.resources import evaluation_windows
    from explorer.training.loop import eval_loss

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))

    spec = explorer.load_spec(sys.argv[1])
    model = explorer.build_model(spec)
    vocab, seq_len = spec.model.vocab_size, 128
    peaks = []
    for n in (16, 16, 256):  # the first warms up
        g = torch.Generator().manual_seed(n)
        inputs, targets = (torch.randint(0, vocab, (n, seq_len), generator=g) for _ in range(2))
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak RSS (VmHWM) starts again from the current RSS
        before = status("VmRSS")
        eval_loss(model, inputs, targets, None, evaluation_windows(4, seq_len, vocab))
        peaks.append(status("VmHWM") - before)
    print(json.dumps(peaks[1:]))
""")


@pytest.mark.slow  # two measured evaluations; run by .ci/run after the default suite
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's VmHWM")
def test_evaluation_peak_does_not_grow_with_the_windows_evaluated(write_spec):
    """A model with a 16,384-token vocabulary evaluating 16 and then 256 windows of 128 tokens,
    in a fresh process: the peak resident memory each evaluation adds is the prediction's
    evaluation phase (4 windows' logits, 32 MiB, and 512 positions' log-probabilities, 32 MiB)
    both times. The unbounded evaluation held 1 GiB for the 256 windows."""
    path = write_spec({"name": "wide", "seed": 1, "tokenizer": "bytes",
                       "model": {"vocab_size": 16384, "context_length": 128, "emb_dim": 32,
                                 "n_heads": 4, "n_layers": 1, "drop_rate": 0.0}})
    spec = explorer.load_spec(path)
    predicted = [sum(p.total for p in training_need(spec, explorer.TrainConfig(
        batch_size=4, seq_len=128, eval_tokens=n * 128)).phase("evaluation")) for n in (16, 256)]
    assert predicted == [64 * 2**20] * 2
    env = {"MALLOC_MMAP_THRESHOLD_": "131072", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", EVAL_PEAK, str(path)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    few, many = json.loads(done.stdout)
    for peak in (few, many):
        assert 0.8 < peak / predicted[0] < 1.1, (few, many)
    assert abs(many / few - 1) < 0.05
