"""Refusing what would not fit: the predictions of train, gradflow, samples and memory on the
CPU, made from the memory analysis's own figures, checked against a real peak, and the one-line
refusal before anything is allocated."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import explorer
from explorer.analysis import runner as analysis
from explorer.cli import main
from explorer.plugins.analyses.gradflow import SAMPLE_TEXT
from explorer.measure.available import ENV_AVAILABLE, parse_size
from explorer.measure.resources import USABLE, Need, Part, size
from tests.helpers import ROOT

# A small model whose head is wide (vocab 4096), so the logits matter as much as the blocks.
SPEC = {"name": "wide-head", "seed": 123, "tokenizer": "bytes",
        "model": {"vocab_size": 4096, "context_length": 64, "emb_dim": 32, "n_heads": 4,
                  "n_layers": 2, "drop_rate": 0.1}}
B, T, V = 4, 64, 4096


class Recorded(Exception):
    """Raised by the recording ``require`` below: the prediction, nothing allocated after it."""


@pytest.fixture
def needs(monkeypatch):
    """The Need each analysis asks the context for, recorded instead of checked."""
    seen = []

    def record(ctx, need):
        seen.append(need)
        raise Recorded

    monkeypatch.setattr(analysis.AnalysisContext, "require", record)
    return seen


def _spec(write_spec, **analyses):
    return explorer.load_spec(write_spec({**SPEC, "analyses": analyses}))


def _memory_figures(spec, seq_len):
    """The memory analysis's figures: parameters, weight and buffer bytes, activations at batch 1."""
    spec.analyses["memory"] = {"batch_size": 1, "seq_len": seq_len}
    memory = explorer.analyze(spec, only=["memory"])["analyses"]["memory"]
    return (memory["weights_bytes"]["fp32"], memory["buffers_bytes"],
            memory["activations"]["measured_bytes"]["fp32"])


def _run(spec, name, needs):
    """Run analysis ``name`` until it asks whether its need fits; return that need."""
    registry = spec.plugin_manager.registry()
    options = {**registry.analysis(name).defaults(), **spec.analyses.get(name, {})}
    ctx = analysis.AnalysisContext(spec)
    with pytest.raises(Recorded):
        registry.analysis(name).load()(ctx, **options)
    assert not ctx.has_model  # asked before the real model was built
    return needs[-1]


def test_train_prediction_is_the_memory_analysis_figures(write_spec, needs):
    spec = _spec(write_spec, train={"batch_size": B, "eval_tokens": 64})
    need = _run(spec, "train", needs)
    params, buffers, activations = _memory_figures(spec, T)
    logits = B * T * V * 4
    assert [(p.name, p.total) for p in need.parts] == [
        ("weights", params), ("buffers", buffers), ("gradients", params), ("AdamW", 2 * params)]
    assert need.parts[0].copies == 1  # the shared model, trained in place
    assert need.phase_names == ("step", "evaluation")
    step, evaluating = need.phases
    assert [(p.name, p.total) for p in step] == [
        ("activations", B * activations), ("gradients of the logits", 2 * logits)]
    # Evaluating one window (eval_tokens 64): its logits, and their log-probabilities.
    assert [p.total for p in evaluating] == [T * V * 4, T * V * 4]
    assert need.total == params + buffers + 3 * params + B * activations + 2 * logits


def test_evaluation_memory_does_not_grow_with_eval_tokens(write_spec, needs):
    """Evaluation runs as many windows per forward as the step's logits hold, or 16 MiB of
    logits (EVAL_LOGITS_FLOOR) if more: 16 windows of 64 x 4096 fp32 logits (1 MiB each)
    here, whatever eval_tokens is; the cross-entropy is taken on 1,024 positions at a time."""
    totals = []
    for eval_tokens in (64 * T, 1024 * T, 0):
        spec = _spec(write_spec, train={"batch_size": 1, "eval_tokens": eval_tokens})
        need = _run(spec, "train", needs)
        assert [(p.total, p.note) for p in need.phase("evaluation")] == [
            (16 * T * V * 4, f"at 16 x {T} per forward"),
            (1024 * V * 4, "for 1024 positions at a time")]
        totals.append(need.total)
    assert totals[0] == totals[1] == totals[2]
    assert need.peak_phase() is need.phase("evaluation")  # a batch of 1: its logits are small
    assert need.lower == "lower analyses.train.batch_size or analyses.train.seq_len"


@pytest.mark.parametrize("steps", [3, 0])
def test_gradflow_prediction(write_spec, needs, steps):
    """One copy of the weights (the steps train the shared model in place); then measuring
    (every gradient) or stepping (the AdamW moments and the largest gradient, the only one
    alive at a time: each is freed once its parameter has stepped)."""
    spec = _spec(write_spec, gradflow={"steps": steps})
    need = _run(spec, "gradflow", needs)
    tokens = min(len(SAMPLE_TEXT), T + 1) - 1  # bytes: one token per character
    params, buffers, activations = _memory_figures(spec, tokens)
    forward = [("activations", activations), ("logits and their gradients", 3 * tokens * V * 4)]
    largest = V * 32 * 4  # the token embedding and the head: 4096 x 32 each
    assert [(p.name, p.total) for p in need.parts] == [("weights", params + buffers)]
    phases = [[(p.name, p.total) for p in phase] for phase in need.phases]
    assert phases == [[("gradients", params), *forward]] + (
        [[("AdamW", 2 * params), ("the largest gradient", largest), *forward]] if steps else [])
    assert need.total == (params + buffers + (2 * params + largest if steps else params)
                          + activations + 3 * tokens * V * 4)


def test_samples_prediction(write_spec, needs):
    spec = _spec(write_spec, samples={"prompts": ["Hello", "Hi"], "max_new_tokens": 10})
    need = _run(spec, "samples", needs)
    params, buffers, _ = _memory_figures(spec, T)
    # The longest prompt's logits and a KV cache of 2 layers x (K, V) x 4 heads x 8 for 15 tokens.
    assert [p.total for p in need.parts] == [params + buffers]
    assert [p.total for p in need.peak_phase()] == [5 * V * 4, 15 * 2 * 2 * 4 * 8 * 4]


def test_memory_on_cpu_prediction(write_spec, needs):
    spec = _spec(write_spec, memory={"device": "cpu", "batch_size": B})
    need = _run(spec, "memory", needs)
    params, buffers, activations = _memory_figures(_spec(write_spec), T)
    assert [p.total for p in need.parts] == [params + buffers, (params + buffers) // 2]
    assert [p.total for p in need.peak_phase()] == [B * activations, B * T * V * 4]


def test_refusal_is_one_line_naming_the_figures_and_the_option(write_spec, monkeypatch):
    spec = _spec(write_spec, train={"batch_size": B, "eval_tokens": 64})
    monkeypatch.setenv(ENV_AVAILABLE, "4MiB")  # the weights alone (1.4 MiB) fit
    report = explorer.analyze(spec, only=["params", "train"])
    assert report["refused"] == ["train"] and "params" in report["analyses"]  # params is kept
    params, buffers, activations = _memory_figures(spec, T)
    logits = 2 * B * T * V * 4
    total = params + buffers + 3 * params + B * activations + logits
    assert report["failures"]["train"] == (
        f"{spec.source}: train needs about {size(total)} (weights {size(params)}, buffers "
        f"{size(buffers)}, gradients {size(params)}, AdamW {size(2 * params)}, activations "
        f"{size(B * activations)} at batch {B} x {T}, gradients of the logits {size(logits)}) "
        f"but only 4 MiB is available; lower analyses.train.batch_size or "
        f"analyses.train.seq_len")


def test_cli_refuses_with_exit_2_before_training(write_spec, monkeypatch, capsys):
    path = write_spec({**SPEC, "analyses": {"train": {"batch_size": B, "eval_tokens": 64}}})
    monkeypatch.setenv(ENV_AVAILABLE, "4MiB")
    with pytest.raises(SystemExit) as done:
        main(["build", str(path), "--only", "train"])
    out, err = capsys.readouterr()
    assert done.value.code == 2 and out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"Error: {path}: train needs about ")
    assert err.rstrip().endswith("lower analyses.train.batch_size or analyses.train.seq_len")


def test_cli_keeps_what_ran_when_one_analysis_is_refused(write_spec, monkeypatch, capsys):
    path = write_spec({**SPEC, "analyses": {"train": {"batch_size": B, "eval_tokens": 64}}})
    monkeypatch.setenv(ENV_AVAILABLE, "4MiB")
    with pytest.raises(SystemExit) as done:
        main(["build", str(path), "--only", "params,train", "--format", "json"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert done.value.code == 2 and report["refused"] == ["train"]
    assert report["analyses"]["params"]["total"] > 0  # what ran before the refusal is printed
    assert err.startswith(f"Error: {path}: train needs about ") and len(err.splitlines()) == 1


def test_kept_free_share_is_named_when_the_need_is_below_what_is_available():
    need = Need("x", (Part("weights", 95 * 2**20),), "lower y")
    with pytest.raises(explorer.ResourceError, match=r"^s: x needs about 95 MiB \(weights 95 "
                       r"MiB\) but only 100 MiB is available and 10% of it is kept free; lower y$"):
        explorer.measure.resources.refuse_unless_fits(need, 100 * 2**20, "s")
    explorer.measure.resources.refuse_unless_fits(need, int(95 * 2**20 / USABLE) + 1, "s")


@pytest.mark.parametrize("text, expected", [
    ("6GiB", 6 * 2**30), ("512 MiB", 512 * 2**20), ("1e9", 10**9), ("123", 123), ("1.5g", 3 * 2**29)])
def test_available_memory_override(monkeypatch, text, expected):
    assert parse_size(text) == expected
    monkeypatch.setenv(ENV_AVAILABLE, text)
    assert explorer.measure.available.available_memory() == expected


def test_bad_available_memory_override_is_one_line(monkeypatch):
    monkeypatch.setenv(ENV_AVAILABLE, "lots")
    with pytest.raises(explorer.ExplorerError, match=r"^EXPLORER_AVAILABLE_MEMORY: 'lots' is not "
                       r"a size; write bytes or a number with a unit, e.g. 6GiB or 512MiB$"):
        explorer.measure.available.available_memory()


# -- the prediction against the real peak ------------------------------------------------------

PEAK_SCRIPT = textwrap.dedent("""
    import json, sys
    import explorer
    from explorer.analysis import runner as analysis

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))

    spec = explorer.load_spec(sys.argv[1])
    needs = []
    check = analysis.AnalysisContext.require
    analysis.AnalysisContext.require = lambda ctx, need: (needs.append(need), check(ctx, need))
    results = []
    for options in json.loads(sys.argv[2]):
        spec.analyses["train"] = options
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak RSS (VmHWM) starts again from the current RSS
        before = status("VmRSS")
        report = explorer.analyze(spec, only=["train"])
        assert not report["failures"], report["failures"]
        results.append({"peak": status("VmHWM") - before, "predicted": needs[-1].total})
    print(json.dumps(results))
""")


@pytest.mark.slow  # 10 s of a measured run; run by .ci/run after the default suite
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's VmHWM")
def test_train_prediction_is_within_10_percent_of_the_real_peak(tmp_path, write_spec):
    """The train analysis run for real, in a fresh process: the peak resident memory it adds
    (VmHWM after minus VmRSS before) against its prediction. The first run warms up (imports,
    tokenizer, corpus), then the same run evaluated on 1 and on 256 windows of each split:
    evaluation in bounded memory, so the peak (a training step's) is the same. Before it was
    bounded, the 256 windows added 512 MiB (64 windows' logits and log-probabilities at once).
    glibc is told to map large blocks, so freed memory leaves the process."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 8000)
    path = write_spec({**SPEC, "model": {**SPEC["model"], "context_length": 128,
                                         "vocab_size": 8192}})
    runs = [{"steps": 1, "batch_size": 1, "seq_len": 8, "eval_tokens": 8, "corpus": str(corpus)},
            {"steps": 2, "batch_size": 24, "eval_tokens": 128, "corpus": str(corpus)},
            {"steps": 2, "batch_size": 24, "eval_tokens": 256 * 128, "corpus": str(corpus)}]
    env = {"MALLOC_MMAP_THRESHOLD_": "131072", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path), json.dumps(runs)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    _, one_window, many_windows = json.loads(done.stdout)
    assert one_window["predicted"] == many_windows["predicted"] > 250 * 2**20
    for run in (one_window, many_windows):
        assert 0.9 < run["predicted"] / run["peak"] < 1.1, run
    assert many_windows["peak"] < 1.05 * one_window["peak"]  # not 512 MiB more


def test_a_built_model_is_not_counted_twice(write_spec, monkeypatch):
    """Once the shared model exists the system reports less memory available; the need still
    counts it, so its bytes are added back to what is available."""
    spec = _spec(write_spec, train={"batch_size": B, "eval_tokens": 64})
    ctx = analysis.AnalysisContext(spec)
    need = ctx.training_need(explorer.TrainConfig(batch_size=B, seq_len=T), copies=2)
    weights = need.parts[0].bytes + need.parts[1].bytes
    monkeypatch.setattr(analysis, "memory_available_on",
                        lambda device: int(need.total / USABLE) + 1 - weights)
    with pytest.raises(explorer.ResourceError):
        ctx.require(need)  # the model is not built: what the system reports is all there is
    ctx.model()
    ctx.require(need)
