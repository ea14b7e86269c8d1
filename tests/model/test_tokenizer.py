import pytest

import explorer
from explorer.model import tokenizer


def test_gpt2_tokens_match_the_book():
    tok = explorer.get_tokenizer("gpt2")
    assert tok.encode("Every effort moves you") == [6109, 3626, 6100, 345]
    assert tok.encode("Every day holds a") == [6109, 1110, 6622, 257]
    assert tok.encode("Hello, I am") == [15496, 11, 314, 716]
    assert tok.n_vocab == 50257
    assert tok.encode("<|endoftext|>", allowed_special={"<|endoftext|>"}) == [50256]
    # Byte-level BPE round-trips any text, unknown words included.
    text = "Akwirw ier naïve 😀"
    assert tok.decode(tok.encode(text)) == text


def test_a_tampered_vocabulary_is_refused(monkeypatch):
    tokenizer.gpt2_tokenizer.cache_clear()
    monkeypatch.setattr(tokenizer, "VOCAB_BPE_SHA256", "0" * 64)
    try:
        with pytest.raises(explorer.ExplorerError, match=r"vocab.bpe has sha256 1ce16647.*expected 0000"):
            tokenizer.gpt2_tokenizer()
    finally:
        tokenizer.gpt2_tokenizer.cache_clear()


def test_byte_tokenizer_round_trips():
    tok = explorer.get_tokenizer("bytes")
    assert tok.n_vocab == 256
    assert tok.encode("hé") == [104, 195, 169]
    assert tok.decode([104, 195, 169]) == "hé"


def test_unknown_tokenizer():
    with pytest.raises(explorer.ExplorerError, match="unknown tokenizer 'sp'; registered: bytes, gpt2"):
        explorer.get_tokenizer("sp")
