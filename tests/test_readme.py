"""README.md's figures come from docs/figures.py: every marker has a producer and every producer
a marker, the fast figures equal what the script computes now, and the README's first two
command blocks are the ones .ci/run and a new user run."""

import re
from pathlib import Path

import pytest

from tests.helpers import load_script
from tests.helpers import ROOT



README = (ROOT / "README.md").read_text()

FIGURES = load_script("docs/figures.py")
FAST = [name for name, (_, slow) in FIGURES.FIGURES.items() if not slow]


def test_every_marker_has_a_producer_and_every_producer_a_marker():
    opened = re.findall(r"<!-- figure: ([\w-]+) -->", README)
    closed = re.findall(r"<!-- /figure: ([\w-]+) -->", README)
    assert opened == closed  # each figure closed, in order, none nested
    assert len(opened) == len(set(opened))
    assert sorted(opened) == sorted(FIGURES.FIGURES)
    held = FIGURES.readme_figures(README)
    assert sorted(held) == sorted(FIGURES.FIGURES)
    assert all(text.strip() for text in held.values()), "a figure's markers hold nothing"


@pytest.mark.parametrize("name", FAST)
def test_fast_figures_equal_what_the_script_computes(name):
    assert FIGURES.readme_figures(README)[name] == FIGURES.compute(name), (
        f"README's figure {name!r} is stale: python docs/figures.py --write {name}")


@pytest.mark.slow
def test_real_models_table_equals_what_the_script_computes():
    """Deterministic but slow (every model's activations measured at 4,096 tokens, ~30 s)."""
    assert FIGURES.readme_figures(README)["real-models"] == FIGURES.compute("real-models")


def test_readme_starts_with_the_install_and_the_test_commands():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    main_job, tests = blocks[0].splitlines(), blocks[1].splitlines()
    assert main_job == ["pip install -c constraints.txt -e .",
                        "explorer build specs/gpt2_small.yaml"]
    assert tests[-1] == "python -m pytest -q"
    installs = [line for line in tests if line.startswith("pip install") and " -e " in line]
    assert installs and all("-c constraints.txt" in line for line in installs)
