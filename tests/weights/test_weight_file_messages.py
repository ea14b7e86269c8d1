"""``--weights`` files that are not checkpoints: one line that says what the file is, and
nothing before it (issue 19, item 12)."""

import json
import pickle
import warnings

import pytest

from tests.helpers import TINY_MODEL, TINY_TOKENIZER, run_cli

EXPECTED = "expected model.safetensors, pytorch_model.bin or model.pth"


@pytest.fixture
def spec(write_spec):
    return write_spec({"name": "t", "seed": 1, "tokenizer": TINY_TOKENIZER, "model": TINY_MODEL})


def build_with(capsys, spec, weights):
    """``explorer build SPEC --weights WEIGHTS --only params``, recording every warning raised
    on the way: (exit code, stdout, stderr, warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = run_cli(capsys, "build", spec, "--weights", weights, "--only", "params")
    return code, out, err, [f"{w.category.__name__}: {w.message}" for w in caught]


@pytest.mark.parametrize("name", ["model.pth", "pytorch_model.bin", "model.safetensors"])
def test_an_empty_file_is_called_empty(capsys, spec, tmp_path, name):
    # It used to be "a text file": zero bytes decode as (empty) text.
    empty = tmp_path / name
    empty.write_bytes(b"")
    for given in (empty, tmp_path):  # the file, or the folder that holds it
        code, out, err, _ = build_with(capsys, spec, given)
        assert code == 2 and out == ""
        assert err.splitlines() == [f"Error: {empty}: is empty (0 bytes), not a checkpoint; "
                                    f"{EXPECTED}"]


@pytest.mark.parametrize("protocol", [4, 5])
def test_a_plain_pickle_is_refused_in_one_line_without_torchs_warnings(capsys, spec, tmp_path,
                                                                       protocol):
    # pickle.dump, not torch.save: torch.load(weights_only=True) refuses it, and warned first
    # (protocols 3+: "Detected pickle protocol 4 in the checkpoint, ...").
    path = tmp_path / "model.pth"
    with open(path, "wb") as f:
        pickle.dump({"tok_emb.weight": [[0.0] * 16] * 256}, f, protocol=protocol)
    code, out, err, caught = build_with(capsys, spec, path)
    assert caught == []
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"Error: {path}: refused: the file holds Python objects, not only "
                          "tensors, and explorer never unpickles them (torch.load "
                          "weights_only=True)")


def test_a_json_file_is_still_a_json_file(capsys, spec, tmp_path):
    path = tmp_path / "model.pth"
    path.write_text(json.dumps({}))
    code, _, err, _ = build_with(capsys, spec, path)
    assert code == 2
    assert err.splitlines() == [
        f"Error: {path}: a JSON file, not a checkpoint; give the directory that holds it "
        f"({tmp_path}) or its weights file (model.safetensors, pytorch_model.bin or model.pth)"]
