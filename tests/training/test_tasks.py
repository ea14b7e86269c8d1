"""The task kind: registration, the built-in tasks' sequences and targets, determinism from the
seed, the metrics, and validation at load (one line, exit 2)."""

import pytest
import torch

from explorer import SpecError
from explorer.registry.plugin_manager import get_plugin_manager
from explorer.spec.loading import load_spec
from explorer.training.loop import train
from explorer.training.settings import TrainConfig
from explorer.training.tasks import IGNORE, make_task, standard_metrics, task_at_length
from tests.helpers import ROOT, run_cli

TINY = ROOT / "specs" / "tiny.yaml"
BUILT_IN = ("fuzzy_recall", "induction", "memorization", "noisy_recall", "recall",
            "selective_copy", "text")


@pytest.fixture(scope="module")
def manager():
    return get_plugin_manager()


def task(manager, name, **params):
    return make_task({"name": name, **params}, manager)


def test_every_built_in_task_is_registered_and_listed(manager, capsys):
    assert set(BUILT_IN) <= set(manager.registry().names("task"))
    code, out, _ = run_cli(capsys, "plugins", "--kind", "task")
    assert code == 0
    for name in BUILT_IN:
        assert f"  {name}" in out
    assert "n_pairs" in out and "norm" not in out.split("task:")[1]


def test_recall_targets_are_the_values_paired_with_the_queried_keys(manager):
    recall = task(manager, "recall", n_pairs=4, n_keys=8, n_values=8, gap=3)
    assert (recall.vocab_size_needed, recall.seq_len_needed, recall.chance) == (17, 19, 1 / 8)
    inputs, targets = next(recall.batches("train", 7, 16))
    assert inputs.shape == targets.shape == (16, 19)
    for row, target in zip(inputs.tolist(), targets.tolist()):
        pairs = dict(zip(row[0:8:2], row[1:8:2]))
        assert len(pairs) == 4 and all(1 <= k <= 8 and 9 <= v <= 16 for k, v in pairs.items())
        assert row[8:11] == [0, 0, 0]  # the gap
        scored = [(t, target[t]) for t in range(19) if target[t] != IGNORE]
        assert [t for t, _ in scored] == [11, 13, 15, 17]  # every query key
        assert all(pairs[row[t]] == value for t, value in scored)
        assert set(row[11:19:2]) <= set(pairs)  # keys of the pairs, drawn with replacement


def test_fuzzy_and_noisy_recall_score_every_value_token_and_no_noise(manager):
    fuzzy = task(manager, "fuzzy_recall", n_pairs=2, n_keys=3, n_values=4, key_len=2,
                 value_len=3)
    inputs, targets = fuzzy.examples("val", 1, 4)
    assert fuzzy.seq_len_needed == 20  # 2 x 2 pairs of 5 tokens
    for row, target in zip(inputs.tolist(), targets.tolist()):
        pairs = {tuple(row[i:i + 2]): row[i + 2:i + 5] for i in (0, 5)}
        for start in (10, 15):  # a query: its key's last token predicts the first value token
            assert target[start + 1:start + 4] == pairs[tuple(row[start:start + 2])]
        assert sum(t != IGNORE for t in target) == 6
    noisy = task(manager, "noisy_recall", n_pairs=4, noise=0.5, n_noise_symbols=2)
    assert noisy.seq_len_needed == 32  # 16 pair tokens and as many noise tokens
    inputs, targets = noisy.examples("val", 1, 8)
    noise = inputs >= noisy.noise_base
    assert noise.sum(dim=1).tolist() == [16] * 8
    assert (targets[noise] == IGNORE).all() and (targets != IGNORE).sum() == 8 * 4


def test_memorization_keeps_one_table_across_sequences_and_splits(manager):
    memo = task(manager, "memorization", n_facts=9, n_values=5, n_pairs=3, key_len=2)
    assert (memo.n_symbols, memo.vocab_size_needed, memo.seq_len_needed) == (3, 9, 9)
    facts = {}
    for split in ("train", "val"):
        inputs, targets = memo.examples(split, 3, 50)
        for row, target in zip(inputs.tolist(), targets.tolist()):
            for i in range(0, 9, 3):
                key, value = tuple(row[i:i + 2]), row[i + 2]
                assert target[i + 1] == value
                assert facts.setdefault(key, value) == value
    assert len(facts) == 9  # every fact seen, each with one value
    other = {tuple(r[0:2]): r[2] for r in memo.examples("val", 4, 50)[0].tolist()}
    assert any(facts[k] != v for k, v in other.items())  # another seed, another table


def test_selective_copy_and_induction_targets(manager):
    copy = task(manager, "selective_copy", n_tokens=3, region=6, n_symbols=4)
    inputs, targets = copy.examples("val", 1, 8)
    for row, target in zip(inputs.tolist(), targets.tolist()):
        data = [t for t in row[:6] if t != 0]
        assert len(data) == 3 and row[6] == 1 and row[7:] == data
        assert target == [IGNORE] * 6 + data + [IGNORE]
    induction = task(manager, "induction", prefix_len=5, n_symbols=9)
    inputs, targets = induction.examples("val", 1, 8)
    for row, target in zip(inputs.tolist(), targets.tolist()):
        assert row[:5] == row[5:] and len(set(row[:5])) == 5
        assert target == [IGNORE] * 5 + row[1:5] + [IGNORE]


def test_the_same_seed_gives_the_same_data_and_the_global_rng_is_untouched(manager):
    recall = task(manager, "recall", train_examples=32)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    first = [next(recall.batches("train", 5, 4)) for _ in range(2)]
    stream = recall.batches("train", 5, 4)
    again = [next(stream), next(stream)]
    assert torch.rand(1) == before  # no draw from torch's global generator
    assert torch.equal(first[0][0], again[0][0]) and not torch.equal(again[0][0], again[1][0])
    pool = recall.examples("train", 5, 32)[0]  # the 32-sequence training set
    assert all(any(torch.equal(row, seq) for seq in pool) for row in again[1][0])
    assert not torch.equal(recall.examples("val", 5, 4)[0], recall.examples("val", 6, 4)[0])
    assert not torch.equal(recall.examples("val", 5, 4)[0], pool[:4])


def test_each_task_says_what_it_is_at_another_length(manager):
    """train.eval_lengths: recall keeps its pairs and queries (the same draws) and grows the gap;
    selective copying spreads as many tokens over a longer region; induction repeats a longer
    block; memorization asks more facts of the same table. A length a task cannot be made at,
    or one that would need a larger vocabulary, is a reason, not an error."""
    recall = task(manager, "recall", n_pairs=4, n_keys=8, n_values=8, gap=3)  # 19 tokens
    assert task_at_length(recall, "recall", 19, 17) == (recall, None)
    longer, reason = task_at_length(recall, "recall", 40, 17)
    assert reason is None and (longer.gap, longer.seq_len_needed, recall.gap) == (24, 40, 3)
    short, tall = recall.examples("val", 5, 6), longer.examples("val", 5, 6)
    assert torch.equal(tall[0][:, :8], short[0][:, :8])  # the same pairs
    assert torch.equal(tall[0][:, 32:], short[0][:, 11:])  # the same queries, 21 tokens later
    assert (tall[0][:, 8:32] == 0).all() and torch.equal(tall[1][:, 32:], short[1][:, 11:])
    assert task_at_length(recall, "recall", 15, 17) == (
        None, "task 'recall': its 4 pairs and queries take 16 tokens")
    copy = task(manager, "selective_copy", n_tokens=4, region=8, n_symbols=6)  # 13 tokens
    wider = task_at_length(copy, "selective_copy", 30, 8)[0]
    inputs, targets = wider.examples("val", 1, 3)
    assert (wider.region, inputs.shape) == (25, (3, 30))
    assert ((inputs[:, :25] != 0).sum(dim=1) == 4).all() and (targets != IGNORE).sum() == 12
    assert task_at_length(copy, "selective_copy", 8, 8)[1] == (
        "task 'selective_copy': 4 tokens, a separator and their copy need at least 9 tokens")
    induction = task(manager, "induction", prefix_len=8, n_symbols=16)
    assert task_at_length(induction, "induction", 24, 16)[0].prefix_len == 12
    for odd_or_long in (17, 34):
        assert task_at_length(induction, "induction", odd_or_long, 16)[1] == (
            "task 'induction': a block of distinct tokens and its repeat: even lengths 4 to 32")
    memorization = task(manager, "memorization", n_facts=16, n_values=8, n_pairs=4)  # 8 tokens
    more = task_at_length(memorization, "memorization", 20, 64)[0]
    assert more.n_pairs == 10 and torch.equal(more._state(3)[1], memorization._state(3)[1])
    assert "lengths 2 to 32 in steps of 2" in task_at_length(memorization, "m", 33, 64)[1]
    assert task_at_length(recall, "recall", 40, 16) == (
        None, "task 'recall' at 40 tokens needs vocab_size 17; the model has 16")

    class Fixed:  # a third-party task without at_length
        seq_len_needed, vocab_size_needed = 10, 4

    assert task_at_length(Fixed(), "fixed", 10, 4)[1] is None
    assert task_at_length(Fixed(), "fixed", 20, 4) == (
        None, "task 'fixed' defines no other lengths (at_length)")

    class Buggy(Fixed):
        def at_length(self, length):
            return {}[length]

    assert task_at_length(Buggy(), "buggy", 20, 4) == (
        None, "task 'buggy': at_length(20) raised KeyError: 20")


def test_standard_metrics_by_hand():
    targets = torch.tensor([[IGNORE, 3, 4], [IGNORE, 5, IGNORE]])
    predictions = torch.tensor([[9, 3, 4], [1, 6, 2]])
    losses = torch.tensor([[0.0, 0.5, 1.0], [0.0, 3.0, 0.0]])
    found = standard_metrics(losses, predictions, targets)
    assert found == {"loss": pytest.approx(1.5), "accuracy": pytest.approx(2 / 3),
                     "exact_match": 0.5, "targets": 3}


def test_a_task_run_reports_its_metrics_and_text_is_the_corpus_run():
    spec = load_spec(TINY, overrides=["model.n_layers=1"])
    config = TrainConfig.from_dict({"task": {"name": "induction", "prefix_len": 4,
                                             "n_symbols": 8}, "steps": 2, "batch_size": 2,
                                    "eval_tokens": 64}).resolve(spec)
    assert config.seq_len == 8 and config.task["train_examples"] == 0
    from explorer.model.gpt import build_model

    result = train(build_model(spec, seed=1), spec, config, seed=1)
    assert result["chance"] == 1 / 8 and result["targets"] == {"train": 24, "val": 24}
    assert [p["step"] for p in result["curve"]] == [0, 2]
    for key in ("val_loss", "val_accuracy", "val_exact_match", "train_accuracy"):
        assert key in result["curve"][-1]
    assert result["final_accuracy"] == result["curve"][-1]["val_accuracy"]
    # Untrained, about chance: log(vocab) loss on 256 outputs, not on the 8 symbols.
    assert result["curve"][0]["val_loss"] == pytest.approx(5.5, abs=0.5)
    text = TrainConfig.from_dict({"task": "text", "steps": 3}).resolve(spec)
    assert text == TrainConfig.from_dict({"steps": 3}).resolve(spec)
    assert "task" not in text.to_dict()  # the runs of existing sweeps keep their keys


@pytest.mark.parametrize("task_options, message", [
    ({"name": "recall", "n_pairs": 200, "n_keys": 300},
     "task: task 'recall' needs model.vocab_size >= 317; the spec has 256"),
    ({"name": "recall", "n_pairs": 40},
     "task.n_pairs: 40 distinct keys of 1 token(s) from 16 symbols do not exist"),
    ({"name": "induction", "prefix_len": 100, "n_symbols": 200},
     "task: task 'induction' needs model.context_length >= 200; the spec has 128"),
    ({"name": "recal"}, "task.name: unknown task 'recal'; did you mean 'recall'?"),
    ({"name": "recall", "n_pair": 4}, "task.n_pair: unknown parameter of task 'recall'"),
    ({"name": "recall", "n_pairs": 0}, "task.n_pairs: must be >= 1, got 0"),
])
def test_bad_task_settings_are_one_line_naming_the_key(task_options, message):
    spec = load_spec(TINY)
    with pytest.raises(SpecError) as info:
        TrainConfig.from_dict({"task": task_options}, "run.yaml").resolve(spec, "run.yaml",
                                                                          task_key="task")
    assert str(info.value).startswith(f"run.yaml: {message}")
    assert "\n" not in str(info.value)


def test_the_cli_refuses_a_spec_too_small_for_its_task_at_load(capsys):
    for task, needs in (("{name: recall, n_pairs: 100, n_keys: 300}", "vocab_size >= 317"),
                        ("{name: recall, n_pairs: 100, n_keys: 200}", "context_length >= 400")):
        code, out, err = run_cli(capsys, "build", TINY, "--only", "train", "--set",
                                 f"analyses.train.task={task}")
        have = 256 if "vocab" in needs else 128
        assert (code, out) == (2, "")
        assert err.strip() == (f"Error: --set analyses.train.task: task 'recall' needs "
                               f"model.{needs}; the spec has {have}; a spec with "
                               f"model.{needs}, or easier task settings")
