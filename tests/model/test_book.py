"""Fidelity to the book's chapter 4 (figures from ../shared/reference/book_ch04.md)."""

import pytest
import torch

import explorer

BOOK_PARAMS = {  # total, total minus out_head, fp32 MB (2**20 bytes)
    "gpt2_small": (163_009_536, 124_412_160, 621.83),
    "gpt2_medium": (406_212_608, 354_749_440, 1549.58),
    "gpt2_large": (838_220_800, 773_891_840, 3197.56),
    "gpt2_xl": (1_637_792_000, 1_557_380_800, 6247.68),
}

# First and last three logits of each position of the book's seed-123 forward pass.
BOOK_LOGITS = {
    (0, 0): ([0.3613, 0.4222, -0.0711], [0.3483, 0.4661, -0.2838]),
    (0, 1): ([-0.1792, -0.5660, -0.9485], [0.0477, 0.5181, -0.3168]),
    (0, 2): ([0.7120, 0.0332, 0.1085], [0.1018, -0.4327, -0.2553]),
    (0, 3): ([-1.0076, 0.3418, -0.1190], [0.7195, 0.4023, 0.0532]),
    (1, 0): ([-0.2564, 0.0900, 0.0335], [0.2659, 0.4454, -0.6806]),
    (1, 1): ([0.1230, 0.3653, -0.2074], [0.7705, 0.2710, 0.2246]),
    (1, 2): ([1.0558, 1.0318, -0.2800], [0.6936, 0.3205, -0.3178]),
    (1, 3): ([-0.1565, 0.3926, 0.3288], [1.2630, -0.1858, 0.0388]),
}


@pytest.mark.parametrize("name", BOOK_PARAMS)
def test_parameter_counts_and_fp32_size_match_the_book(name):
    total, without_head, mb = BOOK_PARAMS[name]
    # The weight figures do not depend on the activation measurement's length: keep it short.
    spec = explorer.load_spec(f"specs/{name}.yaml", overrides=["analyses.memory.seq_len=8"])
    report = explorer.analyze(spec, only=["params", "memory"])
    params, memory = report["analyses"]["params"], report["analyses"]["memory"]
    assert params["total"] == total
    assert params["with_tied_head"] == without_head
    assert params["by_kind"]["output_head"] == total - without_head
    assert memory["weights_bytes"]["fp32"] == 4 * total
    assert memory["weights_mb"]["fp32"] == mb


def test_gpt2_small_fp32_bytes_exact():
    spec = explorer.load_spec("specs/gpt2_small.yaml", overrides=["analyses.memory.seq_len=8"])
    report = explorer.analyze(spec, only=["memory"])
    assert report["analyses"]["memory"]["weights_bytes"]["fp32"] == 652_038_144


def test_per_block_split_exercise_4_1():
    report = explorer.analyze(explorer.load_spec("specs/gpt2_small.yaml"), only=["params"])
    block = report["analyses"]["params"]["per_block"][0]
    assert block == {"attention": 2_360_064, "ffn": 4_722_432, "norm": 3_072, "total": 7_085_568}
    with_bias = explorer.load_spec("specs/gpt2_small.yaml", overrides=["model.qkv_bias=true"])
    block = explorer.analyze(with_bias, only=["params"])["analyses"]["params"]["per_block"][0]
    assert block["attention"] == 2_362_368


def test_openai_layout_count():
    report = explorer.analyze(explorer.load_spec("specs/gpt2_small_openai.yaml"), only=["params"])
    params = report["analyses"]["params"]
    assert params["total"] == 124_439_808
    assert params["head_tied"] is True
    assert params["by_kind"]["output_head"] == 0  # the head is the embedding, counted once


@pytest.fixture(scope="module")
def gpt2_small_seed123():
    """The book's ``torch.manual_seed(123); model = GPTModel(cfg)``, plus its first forward."""
    spec = explorer.load_spec("specs/gpt2_small.yaml")
    # From the global stream, as the book builds: its forward draws the dropout masks from
    # where the initialisation stopped (build_model forks the stream by default).
    model = explorer.build_model(spec, seed=123, fork_rng=False)
    tok = explorer.get_tokenizer("gpt2")
    batch = torch.tensor([tok.encode("Every effort moves you"), tok.encode("Every day holds a")])
    with torch.no_grad():
        logits = model(batch)  # training mode, as the book runs it: dropout masks drawn in order
    return model, batch, logits


def test_seed_123_logits_match_the_book(gpt2_small_seed123):
    _, batch, logits = gpt2_small_seed123
    assert batch.tolist() == [[6109, 3626, 6100, 345], [6109, 1110, 6622, 257]]
    assert logits.shape == (2, 4, 50257)
    for (b, t), (first, last) in BOOK_LOGITS.items():
        torch.testing.assert_close(logits[b, t, :3], torch.tensor(first), atol=1e-4, rtol=0)
        torch.testing.assert_close(logits[b, t, -3:], torch.tensor(last), atol=1e-4, rtol=0)


def test_greedy_generation_matches_the_book(gpt2_small_seed123):
    model, _, _ = gpt2_small_seed123
    model.eval()
    tok = explorer.get_tokenizer("gpt2")
    out = explorer.generate(model, torch.tensor([tok.encode("Hello, I am")]), max_new_tokens=6)
    assert out[0].tolist() == [15496, 11, 314, 716, 27018, 24086, 47843, 30961, 42348, 7267]
    assert tok.decode(out[0].tolist()) == "Hello, I am Featureiman Byeswickattribute argue"
    model.train()


def test_state_dict_keys_are_the_books(gpt2_small_seed123):
    model, _, _ = gpt2_small_seed123
    keys = list(model.state_dict())
    assert keys[:2] == ["tok_emb.weight", "pos_emb.weight"]
    expected_block = {
        "att.mask", "att.W_query.weight", "att.W_key.weight", "att.W_value.weight",
        "att.out_proj.weight", "att.out_proj.bias", "ff.layers.0.weight", "ff.layers.0.bias",
        "ff.layers.2.weight", "ff.layers.2.bias", "norm1.scale", "norm1.shift", "norm2.scale",
        "norm2.shift"}
    for i in range(12):
        assert {k[len(f"trf_blocks.{i}."):] for k in keys if k.startswith(f"trf_blocks.{i}.")} == expected_block
    assert keys[-3:] == ["final_norm.scale", "final_norm.shift", "out_head.weight"]
    assert len(keys) == 2 + 12 * len(expected_block) + 3


# -- against the book's own code (the llms-from-scratch package), on a tiny config --------------

book = pytest.importorskip("llms_from_scratch.ch04")

V = 256  # the byte tokenizer's vocabulary: make_spec's tokenizer
TINY_CFG = {"vocab_size": V, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 3,
            "drop_rate": 0.1, "qkv_bias": False}


# The book's arithmetic in training, as specs/gpt2_small.yaml sets it (impl auto, the default,
# computes the same function with fused kernels and draws other dropout masks).
BOOK_IMPL = {"norm": {"name": "layernorm", "impl": "book"},
             "activation": {"name": "gelu_tanh", "impl": "book"},
             "attention": {"name": "mha", "impl": "book"}}


@pytest.fixture
def tiny_pair(make_spec):
    spec = make_spec(model={k: TINY_CFG[k] for k in TINY_CFG}, **BOOK_IMPL)
    ours = explorer.build_model(spec, seed=123)
    torch.manual_seed(123)
    theirs = book.GPTModel(TINY_CFG)
    return ours, theirs


def test_weights_are_the_books_bit_for_bit(tiny_pair):
    ours, theirs = tiny_pair
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_training_mode_forward_is_the_books_bit_for_bit(tiny_pair):
    ours, theirs = tiny_pair
    batch = torch.randint(0, V, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(7)
    out_ours = ours(batch)
    torch.manual_seed(7)
    out_theirs = theirs(batch)
    assert torch.equal(out_ours, out_theirs)


def test_book_checkpoint_loads_strictly(tiny_pair, tmp_path):
    ours, theirs = tiny_pair
    torch.nn.init.normal_(theirs.trf_blocks[1].att.W_key.weight)  # make it differ from ours
    torch.save(theirs.state_dict(), tmp_path / "model.pth")
    state = torch.load(tmp_path / "model.pth", weights_only=True)
    ours.load_state_dict(state, strict=True)
    batch = torch.randint(0, V, (1, 10), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(3)  # training mode, dropout active: the book's path, bit for bit
    out_ours = ours(batch)
    torch.manual_seed(3)
    assert torch.equal(out_ours, theirs(batch))
    ours.eval(), theirs.eval()  # eval mode: torch's fused attention, equal to 1e-5
    torch.testing.assert_close(ours(batch), theirs(batch), atol=1e-5, rtol=0)


def test_greedy_generation_is_the_books(tiny_pair):
    ours, theirs = tiny_pair
    ours.eval(), theirs.eval()
    idx = torch.tensor([[1, 2, 3]])
    expected = book.generate_text_simple(theirs, idx, max_new_tokens=8, context_size=16)
    assert torch.equal(explorer.generate(ours, idx, max_new_tokens=8), expected)
