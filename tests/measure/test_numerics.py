"""Numerical faults are reported, not hidden: NaN or inf is named with the first module."""

import json

import pytest
import torch

import explorer
from explorer.cli import main
from explorer.measure.numerics import first_nonfinite_module, nonfinite_report


def poisoned(make_spec, where="trf_blocks.1.ff.layers.0.weight", value=float("inf")):
    spec = make_spec(model={"vocab_size": 50257}, tokenizer="gpt2")
    model = explorer.build_model(spec)
    with torch.no_grad():
        model.get_parameter(where)[0, 0] = value
    return spec, model


def test_first_module_with_a_nonfinite_output(make_spec):
    _, model = poisoned(make_spec)
    idx = torch.tensor([[1, 2, 3]])
    assert first_nonfinite_module(model, idx) == "trf_blocks.1.ff.layers.0"
    fine = explorer.build_model(make_spec(model={"vocab_size": 50257}, tokenizer="gpt2"))
    assert first_nonfinite_module(fine, idx) is None
    assert nonfinite_report(fine, idx, fine(idx)) is None


def test_nan_in_the_embedding_is_named(make_spec):
    _, model = poisoned(make_spec, "tok_emb.weight", float("nan"))
    idx = torch.tensor([[0, 1]])
    assert nonfinite_report(model, idx, model(idx)) == {"where": "logits", "module": "tok_emb"}


def test_nonfinite_gradients_are_named(make_spec):
    model = explorer.build_model(make_spec(model={"vocab_size": 50257}, tokenizer="gpt2"))
    idx = torch.tensor([[1, 2, 3]])
    model(idx).sum().backward()
    model.trf_blocks[0].att.W_key.weight.grad[0, 0] = float("nan")
    assert nonfinite_report(model, idx) == {"where": "gradients", "module": "trf_blocks.0.att.W_key",
                                            "parameters": 1}


def test_report_and_cli_name_the_fault(make_spec, capsys):
    spec, model = poisoned(make_spec)
    report = explorer.analyze(spec, only=["gradflow", "samples"], model=model)
    assert report["analyses"]["gradflow"]["nonfinite"] == {
        "where": "logits", "module": "trf_blocks.1.ff.layers.0"}
    assert report["warnings"] == [
        "gradflow: NaN or inf in the logits, first at trf_blocks.1.ff.layers.0",
        "samples: NaN or inf in the logits, first at trf_blocks.1.ff.layers.0"]
    from explorer.analysis.report import to_json
    data = json.loads(to_json(report))  # strict JSON: the NaN loss becomes a string
    assert data["analyses"]["gradflow"]["loss"] in ("nan", "inf")


def test_cli_warns_on_stderr_and_keeps_json_strict(make_spec, capsys, tmp_path):
    spec, model = poisoned(make_spec)
    torch.save(model.state_dict(), tmp_path / "model.pth")
    with pytest.raises(SystemExit) as info:
        main(["build", spec.source, "--weights", str(tmp_path / "model.pth"), "--only",
              "gradflow", "--format", "json"])
    out, err = capsys.readouterr()
    assert info.value.code == 0
    assert err == "warning: gradflow: NaN or inf in the logits, first at trf_blocks.1.ff.layers.0\n"
    assert json.loads(out)["warnings"] == [err[len("warning: "):].strip()]
