"""Shape-only analyses run on the meta device: huge specs are analysable without their weights."""

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

import explorer
from tests.helpers import fewest_layers, slow_marked

SPECS = sorted(str(p) for p in Path("specs").rglob("*.yaml"))


def test_gpt3_175b_params_and_memory_without_weights():
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        [sys.executable, "-m", "explorer", "build", "specs/gpt3_175b.yaml", "--only",
         "params,memory", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = json.loads(proc.stdout)
    L, h, V, s = 96, 12288, 50257, 2048
    closed_form = V * h + s * h + L * (12 * h * h + 13 * h) + 2 * h  # formulas.md, tied head
    assert report["analyses"]["params"]["total"] == closed_form == 174_604_259_328
    assert report["analyses"]["memory"]["weights_bytes"]["fp32"] == 4 * closed_form
    assert max(peak_kb, before) < 1.5 * 2**20  # ru_maxrss is in KiB: under 1.5 GiB


@pytest.mark.parametrize("path", slow_marked(SPECS))
def test_meta_and_real_builds_count_the_same(path):
    # Two blocks keep the real build fast; counts per block are checked block by block.
    spec = explorer.load_spec(path, overrides=[f"model.n_layers={fewest_layers(path)}",
                                               "analyses.memory.seq_len=64"])
    meta = explorer.analyze(spec, only=["params", "memory"])
    if meta["analyses"]["params"]["total"] > 300_000_000:
        pytest.skip("too large to build for real here")
    real = explorer.analyze(spec, only=["params", "memory"], model=explorer.build_model(spec))
    assert real["analyses"] == meta["analyses"]
