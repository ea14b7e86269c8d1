"""What the synthetic tasks must show (issue 20, section 4), on tiny models with fixed seeds:

- softmax attention solves in-context recall where a 1-token window (no mixing between
  positions) stays at chance;
- a sliding window shorter than the key-to-query distance fails recall, and one global layer
  restores it (a per-layer layout);
- memorization improves with the FFN's width at a fixed depth.

Each property has a fast test at the smallest scale that shows it (one seed, a few seconds a
run) and a slow one over seeds with 95% confidence intervals (``-m slow``).
"""

import pytest

import explorer
from explorer.spec.loading import load_spec
from explorer.sweep.stats import paired_difference, summarize
from explorer.training.settings import TrainConfig
from tests.helpers import ROOT

TINY = ROOT / "specs" / "tiny.yaml"
TWO_BLOCKS = ["model.n_layers=2", "model.context_length=16"]  # width 64, 4 heads
# The fast tests' models: 2 blocks of width 32 with 2 heads, a third of the time per step.
NARROW_BLOCKS = [*TWO_BLOCKS, "model.emb_dim=32", "model.n_heads=2"]
ONE_TOKEN_WINDOW = "components.attention={name: mha, window: 1}"
WINDOW_4 = "components.attention={name: mha, window: 4}"
LOCAL_THEN_GLOBAL = "layers=[{layers: [0], components: {attention: {window: 4}}}]"
# Two pairs of 4 keys and 4 values: chance is 1/4. With a gap of 8 blanks every query is at
# least 9 positions after the value it asks for, beyond two layers of 4-token windows (7).
RECALL = {"name": "recall", "n_pairs": 2, "n_keys": 4, "n_values": 4}
FAR_RECALL = {**RECALL, "gap": 8}
# 256 facts whose keys are two tokens: a lookup of a pair, which the embeddings alone cannot do.
FACTS = {"name": "memorization", "n_facts": 256, "n_values": 64, "n_pairs": 4, "key_len": 2}
ONE_NARROW_BLOCK = ["model.n_layers=1", "model.context_length=16", "model.emb_dim=16",
                    "model.n_heads=2"]


def accuracy(overrides, task, steps, seed=1, lr=3e-3, batch_size=128):
    """The final validation accuracy of the tiny spec with ``overrides`` trained on ``task``."""
    spec = load_spec(TINY, overrides=overrides)
    config = TrainConfig.from_dict({"task": task, "steps": steps, "batch_size": batch_size,
                                    "lr": lr, "eval_every": steps, "eval_tokens": 1024}
                                   ).resolve(spec)
    result = explorer.train(explorer.build_model(spec, seed=seed), spec, config, seed=seed)
    return result["final_accuracy"]


# Recall needs two layers to form an induction circuit (a previous-token head, then a lookup);
# at batches of 128 sequences it forms within 200 steps. Before it forms, a model guesses among
# the values in reach (with 2 pairs, about 0.6): "near chance" below allows for that.
def test_attention_solves_recall_where_a_one_token_window_stays_at_chance():
    assert accuracy(NARROW_BLOCKS, RECALL, 200) > 0.9
    assert accuracy([*NARROW_BLOCKS, ONE_TOKEN_WINDOW], RECALL, 200) < 0.4  # chance: 0.25


def test_a_window_short_of_the_query_distance_fails_recall_and_a_global_layer_restores_it():
    # The windows still see the queries before: a repeated query's value (about 0.4).
    assert accuracy([*NARROW_BLOCKS, WINDOW_4], FAR_RECALL, 200) < 0.5
    assert accuracy([*NARROW_BLOCKS, LOCAL_THEN_GLOBAL], FAR_RECALL, 200) > 0.75


def test_memorization_improves_with_ffn_width():
    narrow, wide = (accuracy([*ONE_NARROW_BLOCK, f"components.ffn={{name: mlp, expansion: {e}}}"],
                             FACTS, 150, lr=1e-2, batch_size=32) for e in (1, 8))
    assert wide > narrow + 0.1


SEEDS = (1, 2, 3)


def interval(overrides, task, steps):
    return summarize(accuracy(overrides, task, steps, seed) for seed in SEEDS)["ci"]


@pytest.mark.slow
def test_recall_over_seeds_attention_against_no_mixing():
    """Three seeds, 300 steps: attention's 95% CI above 0.9, the 1-token window's below 0.4."""
    assert interval(TWO_BLOCKS, RECALL, 300)[0] > 0.9
    assert interval([*TWO_BLOCKS, ONE_TOKEN_WINDOW], RECALL, 300)[1] < 0.4


@pytest.mark.slow
def test_window_and_global_layer_over_seeds():
    """Three seeds, 300 steps, width 32: the windows' mean below 0.5 and the global layer's
    above 0.75, its paired gain over them above 0.25 with a 95% CI above 0 (measured: 0.41,
    0.94, +0.53)."""
    local, restored = ({seed: accuracy([*NARROW_BLOCKS, layout], FAR_RECALL, 300, seed)
                        for seed in SEEDS} for layout in (WINDOW_4, LOCAL_THEN_GLOBAL))
    assert summarize(local.values())["mean"] < 0.5
    assert summarize(restored.values())["mean"] > 0.75
    gain = paired_difference(restored, local)
    assert gain["significant"] and gain["mean"] > 0.25


@pytest.mark.slow
def test_memorization_over_seeds_rises_with_each_width():
    """Expansion 1, 4 and 16, three seeds (a seed fixes the facts): the mean accuracy rises with
    each width, and 16 over 1 is a paired gain above 0.2 whose 95% CI excludes 0 (measured:
    0.50, 0.64 and 0.89)."""
    widths = [{seed: accuracy([*ONE_NARROW_BLOCK, f"components.ffn={{name: mlp, expansion: "
                                                  f"{e}}}"], FACTS, 150, seed, lr=1e-2,
                                batch_size=32)
               for seed in SEEDS} for e in (1, 4, 16)]
    means = [summarize(found.values())["mean"] for found in widths]
    assert means == sorted(means) and means[0] < means[1] < means[2]
    gain = paired_difference(widths[2], widths[0])
    assert gain["significant"] and gain["mean"] > 0.2
