"""Built-in tasks (the ``task`` kind): corpus language modelling (``text``) and the synthetic
tasks of the MAD suite (Poli et al. 2024, github.com/athms/mad-lab) and Zoology's
multi-query associative recall (Arora et al. 2023, github.com/HazyResearch/zoology), written
afresh: recall.py (recall, fuzzy_recall, noisy_recall, memorization) and copying.py
(selective_copy, induction)."""

from explorer import Component, Param, hookimpl

_RECALL = "explorer.plugins.tasks.recall"
_COPYING = "explorer.plugins.tasks.copying"

TRAIN_EXAMPLES = Param("train_examples", int, 0, "the training set: this many sequences drawn "
                       "once from the seed and sampled with replacement; 0 = fresh sequences "
                       "every step", min=0)


def _pairs(n_pairs, n_keys, n_values):
    return (Param("n_pairs", int, n_pairs, "key-value pairs per sequence (each queried once)",
                  min=1),
            Param("n_keys", int, n_keys, "symbols keys are written with", min=1),
            Param("n_values", int, n_values, "symbols values are written with", min=2))


GAP = Param("gap", int, 0, "blank tokens between the pairs and the queries: a query is at "
            "least this far from its key", min=0)


@hookimpl
def explorer_components():
    return [
        Component(kind="task", name="text", factory="explorer.training.tasks:CorpusTask",
                  description="Next-token prediction on the train settings' corpus (the "
                              "default): the loss on every position, the unigram baseline."),
        Component(kind="task", name="recall", factory=f"{_RECALL}:recall",
                  params=(*_pairs(8, 16, 16), GAP, TRAIN_EXAMPLES),
                  description="Multi-query associative recall (Zoology's MQAR): key-value "
                              "pairs, then every key again; predict its value."),
        Component(kind="task", name="fuzzy_recall", factory=f"{_RECALL}:fuzzy_recall",
                  params=(*_pairs(4, 8, 8),
                          Param("key_len", int, 2, "tokens per key", min=1, max=8),
                          Param("value_len", int, 2, "tokens per value", min=1, max=8),
                          GAP, TRAIN_EXAMPLES),
                  description="Recall of multi-token keys and values (MAD's fuzzy recall, "
                              "fixed lengths): predict every value token of each queried key."),
        Component(kind="task", name="noisy_recall", factory=f"{_RECALL}:noisy_recall",
                  params=(*_pairs(8, 16, 16),
                          Param("noise", float, 0.2, "the share of tokens that are noise, "
                                "scattered among the pairs and the queries", min=0, max=1,
                                exclusive_max=True),
                          Param("n_noise_symbols", int, 8, "symbols noise is written with",
                                min=1),
                          GAP, TRAIN_EXAMPLES),
                  description="Recall with noise tokens among the pairs and queries (MAD's "
                              "noisy recall); noise carries no loss."),
        Component(kind="task", name="memorization", factory=f"{_RECALL}:Memorization",
                  params=(Param("n_facts", int, 64, "key -> value facts, fixed by the seed: "
                                "the training set", min=1),
                          Param("n_values", int, 64, "symbols values are written with", min=2),
                          Param("n_pairs", int, 8, "facts per sequence (distinct keys)", min=1),
                          Param("key_len", int, 1, "tokens per key", min=1, max=8)),
                  description="Memorise a fixed key -> value table (MAD's memorization): "
                              "the values cannot be read from the context."),
        Component(kind="task", name="selective_copy", factory=f"{_COPYING}:SelectiveCopy",
                  params=(Param("n_tokens", int, 8, "tokens to copy", min=1),
                          Param("region", int, 32, "length of the region they are scattered "
                                "in, among blanks", min=1),
                          Param("n_symbols", int, 16, "symbols the tokens are drawn from",
                                min=2),
                          TRAIN_EXAMPLES),
                  description="Copy the non-blank tokens of a region, in order, after a "
                              "separator (MAD's selective copying)."),
        Component(kind="task", name="induction", factory=f"{_COPYING}:Induction",
                  params=(Param("prefix_len", int, 16, "distinct random tokens, then the same "
                                "again", min=2),
                          Param("n_symbols", int, 32, "symbols they are drawn from", min=2),
                          TRAIN_EXAMPLES),
                  description="A random block repeated: in the repeat, predict the token that "
                              "followed the previous occurrence (an induction head)."),
    ]
