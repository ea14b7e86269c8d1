"""README.md's figures come from docs/figures.py: every marker has a producer and every producer
a marker, the fast figures equal what the script computes now, and the README's first two
command blocks are the ones .ci/run and a new user run. Every ``explorer`` command in README's
code blocks runs (or is listed with the reason it does not), and each picture quotes the command
that draws it."""

import json
import re
import shlex
import sys

import pytest

from tests.helpers import load_script, run_cli
from tests.helpers import ROOT
from tests.helpers.published_configs import DEEPSEEK_V3, LLAMA3_8B



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
    assert tests[-1] == "python -m pytest -q -n 2"
    installs = [line for line in tests if line.startswith("pip install") and " -e " in line]
    assert installs and all("-c constraints.txt" in line for line in installs)


# -- every explorer command in README's code blocks (issue 19, item 15) -------------------------
#
# Each one is run here as written (in-process, from the checkout's root, with the memory of a
# modest laptop, EXPLORER_AVAILABLE_MEMORY=8GiB, so a command that would not fit one fails), run
# with its training cut short, or listed as not run with the reason. Placeholders (FILE, DIR,
# SPEC, OUT_DIR, HEAD:6379) mark examples that are not commands to run.

LAPTOP = "8GiB"
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{2,}\b")  # FILE, DIR, OUT_DIR, SPEC, HEAD:6379

# Run as written: the exit code, and what the output must hold (README's own lines where it
# quotes them). Those with files to read run in a folder holding them (published configs).
RUN = {
    "explorer build specs/gpt2_small.yaml --set model.n_layers=2 --only params": (0, "92,153,856"),
    "explorer build specs/ablations/local_global.yaml --only params":
        (0, "layers: 12, differing in:"),
    "explorer build gpt2_smal": (2, None),  # README quotes the error line: compared whole below
    "explorer build specs/tiny.yaml --device cuda": (2, None),  # likewise, without CUDA
    "explorer spec-from-hf Meta-Llama-3-8B/config.json > llama3_8b.yaml": (0, "name: "),
    "explorer build Meta-Llama-3-8B/": (0, "== summary =="),
    "explorer build DeepSeek-V3/config.json --only params": (0, "671,026,404,352"),
    "explorer build specs/gpt2_small.yaml --set components.norm=scalenorm --only params":
        (0, "scalenorm  from scalenorm (explorer-scalenorm 0.1.0)"),
}
CONFIGS = {"Meta-Llama-3-8B": LLAMA3_8B, "DeepSeek-V3": DEEPSEEK_V3}

# Trainings of hundreds of steps: run with two steps (one of warmup), which changes neither what
# they need in memory (batch x seq_len) nor anything before the first step.
SHORT = ["--set", "analyses.train.steps=2"]
TRAININGS = {
    "explorer build specs/tiny.yaml --only train --set analyses.train.steps=300 --set "
    "analyses.train.schedule=cosine --set analyses.train.warmup=30":
        (0, SHORT + ["--set", "analyses.train.warmup=1"]),
    "explorer compare specs/tiny.yaml specs/tiny_rmsnorm.yaml --only train": (0, SHORT),
    # Refused for memory on purpose (16 GiB): README quotes the refusal, compared whole below.
    "EXPLORER_AVAILABLE_MEMORY=16GiB explorer compare specs/tiny.yaml specs/ablations/relu.yaml "
    "--only train": (1, SHORT),
}

NOT_RUN = {
    "explorer build specs/gpt2_small.yaml":
        "the full report on GPT-2 small: 10 s and 2.6 GiB, which docs/figures.py main-job times",
    "explorer build specs/gpt2_small.yaml --html gpt2_small.html": "the same report, as a page",
    "explorer compare specs/gpt2_small.yaml specs/ablations/no_shortcut.yaml --only gradflow":
        "gradflow on two GPT-2 smalls (docs/figures.py compare-gradflow)",
    "explorer compare specs/gpt2_small.yaml specs/ablations/*.yaml --html ablations.html":
        "the full report on 14 GPT-2-small-sized specs",
    "explorer sweep sweeps/positional.yaml --html positional.html":
        "trains 20 runs of 400 steps (docs/figures.py sweep-positional)",
    "explorer probe tiny --set model.n_layers=2":
        "trains 108 runs, minutes (docs/figures.py probe-mad runs and times it)",
    "explorer probe specs/tiny.yaml specs/tiny_rmsnorm.yaml --set model.n_layers=2 --seeds 3":
        "trains 216 runs: twice the probe docs/figures.py probe-mad times",
    "explorer probe tiny --set model.n_layers=2 --dry-run":
        "times steps of a few runs (docs/figures.py probe-mad quotes its prediction); "
        "tests/sweep/test_probe.py runs --dry-run on a tiny suite",
    "explorer generate specs/gpt2_small.yaml --prompt 'Hello, I am' --max-new-tokens 6":
        "builds GPT-2 small's weights (10 s here); tests/model/test_book.py checks these tokens",
    "explorer build specs/gpt2_small_openai.yaml --weights ~/gpt2/":
        "needs OpenAI's GPT-2 weights, which nothing downloads",
    "explorer build specs/gpt2_small.yaml --weights model.pth --only samples":
        "needs the book's trained model.pth",
    "explorer export specs/gpt2_small_openai.yaml --weights ~/gpt2/ --to explorer gpt2.safetensors":
        "needs OpenAI's GPT-2 weights",
    "explorer build gpt2.safetensors --only params": "needs the file the export above writes",
    "explorer export gpt2.safetensors --to hf gpt2-hf/": "needs the file the export above writes",
    "explorer build specs/tiny.yaml --set model.parametrization=mup --set model.base_width=64 "
    "--set model.n_layers=2 --only coordcheck --html coordcheck.html":
        "trains 4 widths up to 512; tests/analysis/test_coordcheck.py runs it at 64 and 512",
    "explorer export specs/llama_style.yaml --to hf llama-hf/":
        "writes 611 MB of weights; tests/weights/test_hf_llama.py exports tiny Llama-family specs",
}


def fenced_blocks(lang=None):
    """The text of each fenced block of README (of language ``lang`` only, if given)."""
    return [body for found, body in re.findall(r"^```([\w-]*)\n(.*?)^```$", README, re.S | re.M)
            if lang is None or found == lang]


def readme_commands():
    """Every ``explorer ...`` line of README's fenced blocks (``$ `` prompts and ``VAR=value``
    prefixes kept, continuation lines joined, comments dropped), normalised by shlex."""
    commands = []
    for block in fenced_blocks():
        lines = iter(block.splitlines())
        for line in lines:
            line = line.strip().removeprefix("$ ")
            if not re.match(r"(\w+=\S+ )*explorer \w", line):
                continue
            while line.endswith("\\"):
                line = line[:-1] + " " + next(lines).strip()
            commands.append(shlex.join(shlex.split(line, comments=True)))
    return list(dict.fromkeys(commands))


COMMANDS = readme_commands()


def test_every_readme_command_is_run_or_listed_with_a_reason():
    placeholders = [c for c in COMMANDS if PLACEHOLDER.search(c.split("explorer ", 1)[1])]
    assert len(placeholders) == 5  # the sweep and probe options' FILE/DIR, the cluster's HEAD:6379
    listed = {shlex.join(shlex.split(c)) for c in [*RUN, *TRAININGS, *NOT_RUN]}
    assert sorted(set(COMMANDS) - set(placeholders)) == sorted(listed)


def _run(capsys, monkeypatch, tmp_path, command, extra=()):
    """``command`` (a README line) in this process: (exit code, stdout, stderr)."""
    words = shlex.split(command)
    env = {}
    while "=" in words[0]:
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    monkeypatch.setenv("EXPLORER_AVAILABLE_MEMORY", env.pop("EXPLORER_AVAILABLE_MEMORY", LAPTOP))
    assert not env and words.pop(0) == "explorer"
    redirect = words[words.index(">") + 1] if ">" in words else None
    words = words[:words.index(">")] if redirect else words
    code, out, err = run_cli(capsys, *words, *extra)
    if redirect:
        (tmp_path / redirect).write_text(out)
    return code, out, err


@pytest.fixture
def scalenorm_installed(tmp_path, monkeypatch):
    """``pip install -e examples/explorer-scalenorm``, as far as explorer can tell: its
    dist-info (with the entry point) and its module on sys.path."""
    info = tmp_path / "site" / "explorer_scalenorm-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: explorer-scalenorm\n"
                                   "Version: 0.1.0\n")
    (info / "entry_points.txt").write_text("[explorer]\nscalenorm = explorer_scalenorm\n")
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "explorer-scalenorm"))
    monkeypatch.syspath_prepend(str(info.parent))
    yield
    sys.modules.pop("explorer_scalenorm", None)


def quoted_output(command):
    """The lines README shows right after ``$ command`` in a block."""
    command = shlex.join(shlex.split(command))
    for block in fenced_blocks(""):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("$ ") and shlex.join(shlex.split(line[2:])) == command:
                return [out for out in lines[i + 1:] if out != "..."]
    return []


@pytest.mark.parametrize("command", RUN)
def test_readme_command_runs(command, capsys, monkeypatch, tmp_path, request):
    if "scalenorm" in command:
        request.getfixturevalue("scalenorm_installed")
    if any(folder in command for folder in CONFIGS):
        for folder, config in CONFIGS.items():
            (tmp_path / folder).mkdir()
            (tmp_path / folder / "config.json").write_text(json.dumps(config))
        monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, monkeypatch, tmp_path, command)
    expected_code, holds = RUN[command]
    if command.endswith("--device cuda") and _torch_with_cuda():
        # README shows the refusal of the CPU-only torch that constraints.txt installs.
        assert code == 0 or (code == 2 and len(err.splitlines()) == 1), err
        return
    assert code == expected_code, err
    if holds:
        assert holds in out
    if code == 2:
        assert err.splitlines() == quoted_output(command)


def _torch_with_cuda():
    import torch

    return torch.version.cuda is not None


@pytest.mark.parametrize("command", TRAININGS)
def test_readme_training_fits_a_laptop_and_runs(command, capsys, monkeypatch, tmp_path):
    expected_code, shorter = TRAININGS[command]
    code, out, err = _run(capsys, monkeypatch, tmp_path, command, shorter)
    assert code == expected_code, err
    if code == 0:
        assert "final validation loss" in out or "final_val_loss" in out
        assert "needs about" not in err
    else:  # the refusal README quotes, and nothing else failed
        refusals = [line for line in err.splitlines() if line.startswith("error:")]
        quoted = quoted_output(command)
        assert refusals == [line for line in quoted if line.startswith("error:")] != []


def test_readme_python_example_trains_a_tiny_model():
    # It used to train the 2-layer GPT-2 small at 8 x 1024 tokens per step: 11.5 GiB.
    block = next(b for b in fenced_blocks("python") if b.startswith("import explorer, torch"))
    train = [line.split("  #")[0] for line in block.splitlines() if "explorer.train(" in line]
    assert train == ["result = explorer.train(explorer.build_model(tiny), tiny, "
                     "explorer.TrainConfig(steps=50))"]
    assert 'tiny = explorer.load_spec("specs/tiny.yaml")' in block


def test_readme_pictures_quote_the_command_that_draws_them():
    flat = " ".join(README.split())
    for path, args in FIGURES.PICTURES.items():
        assert f"({path})" in README
        assert f"`explorer {' '.join(args)}`" in flat.replace("` explorer", "`explorer")


def test_the_tiny_ablation_readme_trains_is_tiny_with_rmsnorm():
    import explorer

    tiny, ablation = (explorer.load_spec(ROOT / "specs" / f"{name}.yaml")
                      for name in ("tiny", "tiny_rmsnorm"))
    differences = explorer.compare([tiny, ablation], only=["params"])["spec_differences"]
    assert differences == {  # the norm, with each one's own parameters
        "components.norm.name": ["layernorm", "rmsnorm"], "components.norm.eps": [1e-5, 1e-6],
        "components.norm.impl": ["auto", None], "components.norm.unit_offset": [None, False]}
    counts = [explorer.analyze(s, only=["params"])["analyses"]["params"]["total"]
              for s in (tiny, ablation)]
    assert counts == [339_840, 339_840 - 13 * 64]  # 13 norms of width 64 lose their shift


# -- the size-ladder figure, from a hand-made ladder report (the sweep trains for minutes) -------
#
# docs/figures.py size-ladder writes the fit table with Δ's star in its cell, the run's cost, and
# caveats that quote the report's own numbers.

def _ladder_variant(label, E, alpha, interval, prediction, difference=None):
    rungs = [{"x": x, "final_val_loss": {"n": 3}} for x in (1_000, 4_000, 15_000)]
    return {"label": label, "rungs": rungs, "is_baseline": difference is None,
            "fit": {"E": E, "A": 10.0, "alpha": alpha, "prediction": prediction,
                    "intervals": {"alpha": interval, "prediction": [prediction - 0.1,
                                                                    prediction + 0.1]}},
            "difference": difference, "fit_problem": None, "difference_problem": None}


def _ladder_report():
    difference = {"difference": -0.5, "interval": [-0.7, -0.3], "significant": True,
                  "crossing": 2_000.0, "crossing_interval": [1_500.0, 2_500.0],
                  "crossing_share": 0.9}
    variants = [_ladder_variant("positional=learned", 1.5, 0.2, [0.1, 0.3], 2.0),
                _ladder_variant("positional=rope", 0.0, 0.25, [0.24, 0.26], 1.5, difference)]
    return {"seeds": [1, 2, 3],
            "points": [{"done": 3, "costs": {"seconds_per_run": 20.0}} for _ in range(6)],
            "ladder": {"variants": variants, "extrapolate_to": 150_000.0,
                       "tokens_per_param": 10.0, "ladder": {"model.emb_dim": [16, 32, 64]}}}


def test_the_ladder_table_puts_the_star_on_the_difference():
    text = FIGURES.size_ladder_text(_ladder_report(), took=5.0, load=1.0, span=600.0)
    table = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    rope = [cell.strip() for cell in table[3].strip("|").split("|")]
    assert len(header) == len(rope) == 12 and "" not in header  # the star's column folded in
    assert rope[header.index("Δ vs baseline at 1.5e+05")] == "-0.5000*"
    assert rope[header.index("Δ 95%")] == "[-0.7, -0.3]"
    assert rope[header.index("crossing")] == "2e+03"


def test_the_ladder_notes_quote_the_cost_and_the_caveats_from_the_report():
    text = FIGURES.size_ladder_text(_ladder_report(), took=5.0, load=1.0, span=600.0)
    # 18 runs of 20 s; the store's span, as the figure itself took under a minute
    assert "18 runs, 6 minutes of training" in text
    assert "10 minutes from the first run's start to the last one's end" in text
    assert ("alpha's 95% interval over 3 rungs spanning a factor 15 in size: "
            "positional=learned [0.10, 0.30]; positional=rope [0.24, 0.26]") in text
    assert "the prediction at 10x the top rung" in text
    # only the variant whose E sits at its bound 0 gets the note that it has no floor in view
    assert "positional=rope: E is fitted at its bound 0" in text
    assert "positional=learned: E" not in text


def test_a_ladder_figure_that_ran_the_sweep_gives_its_own_wall_time():
    text = FIGURES.size_ladder_text(_ladder_report(), took=750.0, load=7.7, span=600.0)
    assert "; 12 minutes of wall time (load average 7.7 before)" in text
