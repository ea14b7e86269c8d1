"""A third-party task written from docs/plugins.md alone: the "Writing a task" example, run as
the page gives it, listed, validated, trained and swept like a built-in."""

import sys

import pytest
import torch
import yaml

import explorer
from explorer import SpecError
from explorer.registry.plugin_manager import get_plugin_manager
from explorer.training.settings import TrainConfig
from explorer.training.tasks import IGNORE, make_task
from tests.helpers import ROOT, run_cli

MARKER = "<!-- task-example -->"


@pytest.fixture
def plugin_file(tmp_path):
    """The page's example, written to a file of its own as a user would."""
    page = (ROOT / "docs" / "plugins.md").read_text()
    block = page.split(MARKER, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "reverse_task.py"
    path.write_text(block)
    yield path
    for name in [n for n in sys.modules if n.startswith("explorer_plugin_reverse_task")]:
        del sys.modules[name]


def spec_with(folder, plugin_file, **model):
    doc = {"name": "t", "seed": 123, "tokenizer": "bytes", "plugins": [plugin_file.name],
           "model": {"vocab_size": 256, "context_length": 32, "emb_dim": 16, "n_heads": 2,
                     "n_layers": 1, **model}}
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_it_is_listed_with_its_parameters(plugin_file, capsys):
    code, out, _ = run_cli(capsys, "plugins", "--kind", "task", "--plugin", plugin_file)
    assert code == 0
    assert "  reverse" in out and "length: int = 6 (>= 1)  tokens to reverse" in out


def test_its_sequences_follow_its_rule(plugin_file):
    reverse = make_task({"name": "reverse", "length": 3, "n_symbols": 5, "train_examples": 0},
                        get_plugin_manager(plugins=[str(plugin_file)]))
    inputs, targets = reverse.examples("val", 1, 6)
    assert inputs.shape == (6, 7) and reverse.vocab_size_needed == 6
    for row, target in zip(inputs.tolist(), targets.tolist()):
        assert row[3] == 0 and row[4:] == row[:3][::-1]
        assert target == [IGNORE] * 3 + row[:3][::-1] + [IGNORE]
    again = next(reverse.batches("train", 9, 4))[0]
    assert torch.equal(again, next(reverse.batches("train", 9, 4))[0])


def test_it_is_validated_at_load_naming_the_key(plugin_file, tmp_path):
    spec = explorer.load_spec(spec_with(tmp_path, plugin_file))
    for task, message in (
            ({"name": "reverse", "length": 100}, "run.yaml: task.length: 100 tokens is more "
                                                 "than this task writes; at most 64"),
            ({"name": "reverse", "length": 20}, "run.yaml: task: task 'reverse' needs "
                                                "model.context_length >= 41; the spec has 32"),
            ({"name": "reverse", "n_symbols": 1}, "run.yaml: task.n_symbols: must be >= 2")):
        with pytest.raises(SpecError, match=f"^{message}"):
            TrainConfig.from_dict({"task": task}).resolve(spec, "run.yaml", task_key="task")


def test_it_trains_and_sweeps_like_a_built_in(plugin_file, tmp_path):
    spec = explorer.load_spec(spec_with(tmp_path, plugin_file))
    config = TrainConfig.from_dict({"task": {"name": "reverse", "length": 4, "n_symbols": 8},
                                    "steps": 3, "batch_size": 4, "eval_every": 3,
                                    "eval_tokens": 90, "eval_lengths": [9, 10, 13]}
                                   ).resolve(spec)
    assert config.seq_len == 9 and config.task["train_examples"] == 0
    result = explorer.train(explorer.build_model(spec, seed=1), spec, config, seed=1)
    assert result["chance"] == 1 / 8
    assert result["targets"] == {"train": 40, "val": 40}  # 90 // 9 = 10 sequences of 4 targets
    assert 0 <= result["final_accuracy"] <= 1 and result["final_val_loss"] > 0
    # Its at_length: the accuracy at other lengths, or the reason it has none.
    at_9, at_10, at_13 = result["lengths"]["cells"]
    assert at_9["value"] == result["final_accuracy"] and at_13["tokens"] == 10 * 6
    assert at_10["reason"] == ("task 'reverse': a block, a separator and the block backwards: "
                               "odd lengths 3 to 129")
    # A sweep plans it from the base spec's plugins: and puts its settings on the grid.
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"base": "tiny.yaml", "grid": {"task.length": [2, 3]},
                                     "seeds": [1], "task": {"name": "reverse"},
                                     "budget": {"steps": 2}}))
    from explorer.sweep import load_sweep, make_plan

    plan = make_plan(load_sweep(sweep))
    assert [p.train.seq_len for p in plan.points] == [5, 7]


def test_a_factory_that_raises_is_named_in_one_line(plugin_file, tmp_path):
    broken = tmp_path / "broken_task.py"
    broken.write_text(plugin_file.read_text().replace('name="reverse", factory=Reverse',
                                                      'name="broken", factory=len'))
    spec = explorer.load_spec(spec_with(tmp_path, broken))
    with pytest.raises(explorer.PluginError, match=r"^task 'broken' \(plugin .*broken_task.py\): "
                                                   r"its factory raised TypeError: "):
        TrainConfig.from_dict({"task": "broken"}).resolve(spec)


BROKEN_AT_LENGTH = """
import torch
from explorer import Component, hookimpl
from explorer.training.tasks import IGNORE, SyntheticTask


class Echo(SyntheticTask):
    vocab_size_needed, seq_len_needed, chance = 4, 6, 0.25

    def sample(self, generator, n, state):
        if self.seq_len_needed != 6:
            raise RuntimeError("no sequences but the trained length")
        inputs = torch.randint(0, 4, (n, 6), generator=generator)
        targets = torch.full_like(inputs, IGNORE)
        targets[:, 1:] = inputs[:, :-1]
        return inputs, targets

    def at_length(self, length):
        return self.stretched(seq_len_needed=length)


@hookimpl
def explorer_components():
    return [Component(kind="task", name="echo", factory=Echo, description="the previous token")]
"""


def test_a_task_that_fails_at_another_length_keeps_the_trained_run(tmp_path):
    """A plugin's examples that raise at another length: that cell says so; the run, and the
    other lengths, are kept."""
    plugin = tmp_path / "echo_task.py"
    plugin.write_text(BROKEN_AT_LENGTH)
    spec = explorer.load_spec(spec_with(tmp_path, plugin))
    config = TrainConfig.from_dict({"task": "echo", "steps": 2, "batch_size": 4,
                                    "eval_tokens": 60, "eval_lengths": [6, 12]}).resolve(spec)
    try:
        result = explorer.train(explorer.build_model(spec, seed=1), spec, config, seed=1)
    finally:
        for name in [n for n in sys.modules if n.startswith("explorer_plugin_echo_task")]:
            del sys.modules[name]
    at_6, at_12 = result["lengths"]["cells"]
    assert at_6["value"] == result["final_accuracy"]
    assert at_12["value"] is None and at_12["reason"] == (
        "task 'echo' at 12 tokens: examples raised RuntimeError: no sequences but the trained "
        "length")
