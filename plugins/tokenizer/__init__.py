"""Built-in tokenizers: GPT-2's BPE (built offline, see explorer.model.tokenizer) and raw bytes."""

from explorer import Component, hookimpl
from explorer.model.tokenizer import GPT2_N_VOCAB


class ByteTokenizer:
    """Raw UTF-8 bytes as tokens: 256 symbols, so a tiny model needs no 50,257-row embedding."""

    name = "bytes"
    n_vocab = 256

    def encode(self, text, allowed_special=()):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


@hookimpl
def explorer_components():
    return [
        Component(kind="tokenizer", name="gpt2", factory="explorer.model.tokenizer:gpt2_tokenizer",
                  n_vocab=GPT2_N_VOCAB,
                  description="GPT-2's byte-level BPE, 50,257 tokens (tiktoken, built offline)."),
        Component(kind="tokenizer", name="bytes", factory=ByteTokenizer,
                  n_vocab=ByteTokenizer.n_vocab,
                  description="UTF-8 bytes, 256 tokens: for tiny models and training probes."),
    ]
