"""Seeds are whole numbers from 0 to 2**63-1, refused in one line at load otherwise: a spec's
seed:, --set seed=, and the --seed of generate and compare (a sweep's seeds: in
tests/sweep/test_plan.py)."""

import pytest

import explorer
from explorer import SpecError
from explorer.spec.config import MAX_SEED
from tests.helpers import TINY_MODEL, TINY_TOKENIZER, run_cli

TINY = "specs/tiny.yaml"


def spec_doc(**changes):
    return {"name": "t", "tokenizer": TINY_TOKENIZER, "model": dict(TINY_MODEL), **changes}


def test_a_seed_beyond_64_bits_is_refused_at_load(write_spec):
    # 2**70 used to pass, then fail in an analysis: "internal error: ValueError: Overflow", exit 1.
    path = write_spec(spec_doc(seed=2**70))
    with pytest.raises(SpecError) as info:
        explorer.load_spec(path)
    assert str(info.value) == (f"{path}: seed: must be <= 9223372036854775807, "
                               "got 1180591620717411303424")
    with pytest.raises(SpecError, match=r"^--set seed: must be >= 0, got -1$"):
        explorer.load_spec(path, overrides=["seed=-1"])


def test_the_largest_seed_builds_a_model(write_spec):
    spec = explorer.load_spec(write_spec(spec_doc(seed=MAX_SEED)))
    assert spec.seed == 2**63 - 1
    explorer.build_model(spec, seed=spec.seed)


def test_the_cli_refuses_a_seed_out_of_range_in_one_line(capsys):
    code, out, err = run_cli(capsys, "build", TINY, "--only", "params", "--set",
                             "seed=1180591620717411303424")
    assert (code, out, err) == (2, "", "Error: --set seed: must be <= 9223372036854775807, got "
                                       "1180591620717411303424\n")
    for command in (["generate", TINY, "--max-new-tokens", "1"], ["compare", TINY, TINY]):
        code, out, err = run_cli(capsys, *command, "--seed", 2**70)
        assert (code, out, err) == (2, "", "Error: --seed: must be <= 9223372036854775807, got "
                                           "1180591620717411303424\n")
