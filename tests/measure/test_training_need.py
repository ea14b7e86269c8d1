"""One memory model: the memory analysis, the train analysis's refusal, a sweep's dry run and its
worker's refusal, and ``explorer.train()`` predict a training run with the same function
(explorer.measure.resources.training_need) and give the same bytes for the same config."""

import pytest

import explorer
from explorer.measure.available import ENV_AVAILABLE
from explorer.measure.resources import WEIGHTS_SHARE, size, training_need
from explorer.sweep import load_sweep, make_plan
from explorer.sweep.estimate import dry_run_text, estimate
from explorer.sweep.worker import execute_run
from explorer.training import loop
from tests.helpers.sweep_helpers import TINY, write_sweep

# A sweep's micro model with a wider vocabulary than its bytes need, so the logits count.
SPEC = {**TINY, "model": {**TINY["model"], "vocab_size": 2048, "n_layers": 2}}
TRAIN = {"batch_size": 8, "seq_len": 32, "eval_tokens": 16384}  # eval_tokens: the default
AVAILABLE = "1MiB"  # the weights (260 KiB) fit, a training run (about 5 MiB) does not


def _prediction_text(line):
    """``needs about X (the parts)`` out of a refusal or a report line."""
    start = line.index("needs about ")
    end = line.index(" but only ") if " but only " in line else len(line)
    return line[start:end]


@pytest.fixture
def sweep(tmp_path):
    path = write_sweep(tmp_path, spec=SPEC, grid={"model.emb_dim": [16, 32]}, seeds=[1],
                       train=TRAIN, steps=2)
    return make_plan(load_sweep(path))


def test_the_memory_analysis_the_train_refusal_and_the_sweep_agree(sweep, monkeypatch):
    spec = sweep.points[0].spec
    config = sweep.points[0].train
    expected = training_need(spec, config)

    # The memory analysis at the same batch and sequence length (its training_run figure).
    spec.analyses["memory"] = {"batch_size": TRAIN["batch_size"], "seq_len": TRAIN["seq_len"]}
    memory = explorer.analyze(spec, only=["memory"])["analyses"]["memory"]
    run = memory["training_run"]
    assert run["total"] == expected.total
    assert memory["training_bytes"]["fp32"] == {
        "weights": expected.parts[0].total, "gradients": expected.parts[2].total,
        "optimizer": expected.parts[3].total, "total": 16 * memory["parameters"]}

    # The sweep's dry run: its memory/run, and evaluation's share of it.
    est = estimate(sweep, [r.key for r in sweep.runs])
    point = est["points"][0]
    assert point["memory_bytes"] == expected.total
    held = sum(p.total for p in expected.parts)
    assert point["memory_phases_bytes"] == {
        name: held + sum(p.total for p in phase)
        for name, phase in zip(expected.phase_names, expected.phases)}
    assert f"{expected.total / 2**20:,.1f} MB" in dry_run_text(est)

    # Refusals: the train analysis's, a sweep worker's, explorer.train()'s.
    monkeypatch.setenv(ENV_AVAILABLE, AVAILABLE)
    assert expected.parts[0].total + expected.parts[1].total < WEIGHTS_SHARE * 2**20
    spec.analyses["train"] = {**TRAIN}
    report = explorer.analyze(spec, only=["train"])
    assert report["refused"] == ["train"]
    outcome = execute_run(sweep.runs[0].task(threads=1))
    assert outcome["state"] == "failed" and outcome["failure"] == "memory"
    with pytest.raises(explorer.ResourceError) as refused:
        explorer.train(explorer.build_model(spec), spec, config)
    texts = {_prediction_text(line) for line in (
        run["text"], report["failures"]["train"], outcome["reason"], str(refused.value))}
    shown = ", ".join(str(p) for p in (*expected.parts, *expected.peak_phase()) if p.total)
    assert texts == {f"needs about {size(expected.total)} ({shown})"}


def test_explorer_train_refuses_before_allocating(monkeypatch):
    """From Python: the prediction is checked before the optimizer, a gradient or the corpus
    exists; the model's own weights, already allocated, count as available."""
    spec = explorer.load_spec("tiny")
    config = explorer.TrainConfig(steps=1, batch_size=4, seq_len=128)
    model = explorer.build_model(spec)
    need = training_need(spec, config)
    weights = need.parts[0].total + need.parts[1].total
    monkeypatch.setattr(loop, "adamw", lambda *a: pytest.fail("allocated an optimizer"))
    monkeypatch.setattr(loop, "load_training_corpus", lambda *a: pytest.fail("read the corpus"))
    monkeypatch.setenv(ENV_AVAILABLE, str(int(need.total / 0.9) - weights - 1024))
    with pytest.raises(explorer.ResourceError) as refused:
        explorer.train(model, spec, config)
    assert str(refused.value).startswith(f"{spec.source}: {need} but only ")
    assert str(refused.value).endswith("; lower train.batch_size or train.seq_len")
    assert all(p.grad is None for p in model.parameters())


def test_the_training_result_reports_the_prediction():
    spec = explorer.load_spec("tiny", overrides=["model.n_layers=1"])
    config = explorer.TrainConfig(steps=1, batch_size=2, seq_len=32, eval_tokens=64)
    result = explorer.train(explorer.build_model(spec), spec, config)
    assert result["memory"] == training_need(spec, config).to_dict()
    assert result["memory"]["peak_phase"] in ("step", "evaluation")
