"""The text a training run learns from: reading it, tokenizing it, splitting it, and the unigram
baseline a model has to beat.

The default corpus is the documentation text every Python installation ships (the standard
library's ``pydoc_data.topics``, about 465,000 characters); a user may give a UTF-8 text file.
The tokens are split 90/10 by position into train and validation. The unigram baseline is the
loss of a model that ignores context: the cross-entropy of the validation targets under the
train split's token frequencies, add-one smoothed over the vocabulary.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

from explorer.errors import ExplorerError

TRAIN_FRACTION = 0.9


def load_corpus(path=""):
    """The corpus text and a line saying where it came from (no torch needed)."""
    if not path:
        import platform

        import pydoc_data.topics

        topics = pydoc_data.topics.topics
        text = "\n\n".join(topics[key] for key in sorted(topics))
        return text, f"pydoc_data.topics (Python {platform.python_version()} documentation)"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExplorerError(f"train: corpus {path}: no such file") from None
    except IsADirectoryError:
        raise ExplorerError(f"train: corpus {path}: is a directory, not a text file") from None
    except UnicodeDecodeError as exc:
        raise ExplorerError(f"train: corpus {path}: not UTF-8 text ({exc.reason} at byte "
                            f"{exc.start})") from None
    except OSError as exc:
        raise ExplorerError(f"train: corpus {path}: cannot read ({exc.strerror})") from None
    return text, str(path)


def digest(text):
    """A short content hash: two runs on the same text share it, whatever the file is called."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class Corpus:
    """A tokenized corpus split by position: ``train_ids`` then ``val_ids`` (1-D long tensors)."""

    source: str  # where the text came from
    characters: int
    tokenizer: str  # the name of the tokenizer that made the ids
    digest: str  # of the text
    train_ids: object
    val_ids: object

    @property
    def tokens(self):
        return len(self.train_ids) + len(self.val_ids)

    def describe(self, eval_train, eval_val):
        """The ``corpus`` entry of a training result."""
        return {"source": self.source, "characters": self.characters, "tokens": self.tokens,
                "tokenizer": self.tokenizer, "train_tokens": len(self.train_ids),
                "val_tokens": len(self.val_ids),
                "eval_tokens": {"train": eval_train, "val": eval_val}}


def tokenize(text, source, tokenizer, tokenizer_name):
    """Encode ``text`` and split it 90/10 by position."""
    import torch

    ids = torch.tensor(tokenizer.encode(text, allowed_special={"<|endoftext|>"}),
                       dtype=torch.long)
    split = int(TRAIN_FRACTION * len(ids))
    return Corpus(source=source, characters=len(text), tokenizer=tokenizer_name,
                  digest=digest(text), train_ids=ids[:split], val_ids=ids[split:])


def windows(ids, seq_len, max_tokens):
    """Non-overlapping (inputs, targets) windows from the start of ``ids``: (n, T) each."""
    usable = ids[: max_tokens + 1] if max_tokens else ids
    n = (len(usable) - 1) // seq_len
    return usable[: n * seq_len].view(n, seq_len), usable[1: n * seq_len + 1].view(n, seq_len)


def unigram_baseline(train_ids, targets, vocab_size):
    """Cross-entropy (nats) of ``targets`` under add-one smoothed train-split unigram
    frequencies."""
    import torch

    counts = torch.bincount(train_ids, minlength=vocab_size).double()
    log_p = torch.log((counts + 1) / (len(train_ids) + vocab_size))
    return -log_p[targets.flatten()].mean().item()
