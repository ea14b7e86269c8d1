"""Shape-only analyses run on the meta device: huge specs are analysable without their weights."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import explorer
from tests.helpers import ROOT, fewest_layers, load_shrunk, slow_marked
from tests.helpers.peak_memory import run_with_peak_rss

SPECS = sorted(str(p) for p in Path("specs").rglob("*.yaml"))


def test_gpt3_175b_params_and_memory_without_weights():
    # The command's own peak (tests/helpers/peak_memory.py): RUSAGE_CHILDREN of this process
    # also holds earlier tests' subprocesses and this worker's own peak.
    proc, peak_bytes = run_with_peak_rss(
        [sys.executable, "-m", "explorer", "build", "specs/gpt3_175b.yaml", "--only",
         "params,memory", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    L, h, V, s = 96, 12288, 50257, 2048
    closed_form = V * h + s * h + L * (12 * h * h + 13 * h) + 2 * h  # formulas.md, tied head
    assert report["analyses"]["params"]["total"] == closed_form == 174_604_259_328
    assert report["analyses"]["memory"]["weights_bytes"]["fp32"] == 4 * closed_form
    assert peak_bytes < 1.5 * 2**30  # fp32 weights would be 650 GiB


# What ran before the 175B check in the same pytest worker, in small: a heavy subprocess (a CLI
# test) and a peak of the worker's own (a test that loaded torch and Hugging Face models).
AFTER_HEAVY_NEIGHBOURS = """
import json, os, resource, subprocess, sys
from tests.helpers.peak_memory import run_with_peak_rss
subprocess.run([sys.executable, "-c", "b'x' * (512 * 2**20)"], check=True)
ballast = b"x" * (512 * 2**20)
del ballast
done, peak = run_with_peak_rss([sys.executable, "-c", "pass"])
direct = subprocess.Popen([sys.executable, "-c", "pass"])
direct_kib = os.wait4(direct.pid, 0)[2].ru_maxrss
children_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps([done.returncode, peak, children_kib * 1024, direct_kib * 1024]))
"""


def test_peak_rss_is_the_commands_own_after_heavy_neighbours():
    """An empty ``python -c pass``, started after 512 MiB in an earlier child and 512 MiB in the
    starting process itself, peaks at tens of MiB by run_with_peak_rss. RUSAGE_CHILDREN (what
    the 175B test read before) says over 512 MiB, and so does the ``os.wait4`` of a ``pass``
    started straight from the big process (exec keeps the parent's high-water mark)."""
    done = subprocess.run([sys.executable, "-c", AFTER_HEAVY_NEIGHBOURS], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    code, peak_bytes, children_bytes, direct_bytes = json.loads(done.stdout)
    assert code == 0
    assert peak_bytes < 64 * 2**20
    assert children_bytes > 512 * 2**20 and direct_bytes > 512 * 2**20  # the flawed readings


# The GPT-2-small ablations are one structure with one part swapped: three of them (a layout,
# shared KV heads, no shortcut) stand for the rest in the default run; -m slow builds them all.
DEFAULT_ABLATIONS = ("local_global", "mqa", "no_shortcut")
META_SPECS = [pytest.param(p, marks=pytest.mark.slow)
              if "ablations" in p and Path(p).stem not in DEFAULT_ABLATIONS else p
              for p in slow_marked(SPECS)]


@pytest.mark.parametrize("path", META_SPECS)
def test_meta_and_real_builds_count_the_same(path):
    # Two blocks keep the real build fast; counts per block are checked block by block.
    spec = load_shrunk(path, [f"model.n_layers={fewest_layers(path)}",
                              "analyses.memory.seq_len=64"])
    meta = explorer.analyze(spec, only=["params", "memory"])
    if meta["analyses"]["params"]["total"] > 300_000_000:
        pytest.skip("too large to build for real here")
    real = explorer.analyze(spec, only=["params", "memory"], model=explorer.build_model(spec))
    assert real["analyses"] == meta["analyses"]
