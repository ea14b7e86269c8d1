"""Generation: KV-cache decoding equals the book's recompute loop, auto attention, the CLI."""

import itertools
import json
import re
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

import explorer
from explorer.cli import main
from explorer.model.kv_cache import KVCache, ModelCache
from tests.helpers import run_cli
from tests.helpers import ROOT

SPECS = sorted((ROOT / "specs" / "ablations").glob("*.yaml")) + [
    ROOT / "specs" / "llama_style.yaml", ROOT / "specs" / "tiny.yaml"]
# Every spec shrunk to 2 blocks of width 32 with 4 heads (GQA: 2 key/value heads, 2 per group),
# on byte tokens, so each builds and decodes in milliseconds.
SHRINK = ["model.n_layers=2", "model.emb_dim=32", "model.n_heads=4", "model.context_length=64",
          "tokenizer=bytes", "model.vocab_size=256"]

REGISTRY = explorer.get_plugin_manager(entry_points=False).registry()
POSITIONAL = REGISTRY.names("positional")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and lose a lot on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def shrunk(path, window=0, *extra):
    spec = explorer.load_spec(path)
    overrides = list(SHRINK)
    if spec.components["attention"].name == "gqa":
        overrides.append("components.attention.n_kv_heads=2")
    if window:
        overrides.append(f"components.attention.window={window}")
    return explorer.load_spec(path, overrides=overrides + list(extra))


def tokens(*shape, seed=0, vocab=256):
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


# -- cached decoding equals recomputing everything --------------------------------------------

@pytest.mark.parametrize("path, window", list(itertools.product(SPECS, [0, 4])),
                         ids=lambda v: v.stem if isinstance(v, Path) else f"window{v}")
def test_cached_generation_gives_the_books_tokens(path, window):
    model = explorer.build_model(shrunk(path, window)).eval()
    widths = input_widths(model)
    prompt = tokens(2, 10)  # longer than the window: the ring buffer wraps during the prompt
    cached = explorer.generate(model, prompt, max_new_tokens=20)
    assert widths == [10] + [1] * 19  # the prompt once, then one new token per step
    assert torch.equal(cached, explorer.generate(model, prompt, 20, use_cache=False))
    sample = dict(max_new_tokens=20, temperature=0.8, top_k=40, top_p=0.9, seed=5)
    assert torch.equal(explorer.generate(model, prompt, **sample),
                       explorer.generate(model, prompt, use_cache=False, **sample))


def input_widths(model):
    """The number of positions of each forward of ``model`` from now on."""
    widths = []
    model.register_forward_pre_hook(lambda module, args: widths.append(args[0].shape[1]))
    return widths


def teacher_forced_logits(model, sequence, chunks):
    """Last-position logits after each chunk of ``sequence``, fed through a KV cache."""
    cache = ModelCache(len(model.trf_blocks), sequence.shape[1])
    out, start = [], 0
    for size in chunks:
        out.append(model(sequence[:, start:start + size], cache=cache, last_only=True)[:, -1])
        start += size
    return torch.stack(out, dim=1), list(itertools.accumulate(chunks))


@pytest.mark.parametrize("attention, positional, window, impl", list(itertools.product(
    ["mha", "gqa"], POSITIONAL, [0, 4], ["manual", "sdpa"])))
def test_cached_logits_equal_a_full_forward(make_spec, attention, positional, window, impl):
    params = {"n_kv_heads": 2} if attention == "gqa" else {}
    spec = make_spec(positional=positional, attention={"name": attention, "impl": impl,
                                                       "window": window, "qk_norm": True, **params})
    model = explorer.build_model(spec).eval()
    sequence = tokens(2, 24, vocab=97)
    # A prompt longer than the window, single tokens, then chunks that wrap the ring mid-chunk.
    chunks = [10, 1, 1, 1, 6, 1, 3, 1]
    with torch.no_grad():
        cached, ends = teacher_forced_logits(model, sequence, chunks)
        full = model(sequence)  # (B, 24, V)
    torch.testing.assert_close(cached, full[:, [e - 1 for e in ends]], atol=1e-5, rtol=0)


def test_last_only_runs_the_head_on_the_last_position(make_spec):
    model = explorer.build_model(make_spec()).eval()
    idx = tokens(2, 9, vocab=97)
    with torch.no_grad():
        last = model(idx, last_only=True)
        torch.testing.assert_close(last, model(idx)[:, -1:], atol=1e-6, rtol=0)
    assert last.shape == (2, 1, 256)  # conftest.TINY_MODEL's vocab_size


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_past_the_context_generation_crops_like_the_book(make_spec, positional):
    book = pytest.importorskip("llms_from_scratch.ch04")
    model = explorer.build_model(make_spec(model={"context_length": 12}, positional=positional))
    model.eval()
    prompt = tokens(1, 7, vocab=97)  # 7 + 15 new tokens: 10 past the 12-token context
    widths = input_widths(model)
    cached = explorer.generate(model, prompt, max_new_tokens=15)
    # Cached steps while the sequence fits (7 + 5 = 12 tokens), then the book's cropped forward.
    assert widths == [7] + [1] * 5 + [12] * 9
    assert torch.equal(cached, explorer.generate(model, prompt, 15, use_cache=False))
    if positional == "learned":  # the book's own loop, on the book's own model with our weights
        cfg = {"vocab_size": 256, "context_length": 12, "emb_dim": 16, "n_heads": 4,
               "n_layers": 2, "drop_rate": 0.0, "qkv_bias": False}
        theirs = book.GPTModel(cfg).eval()
        theirs.load_state_dict(model.state_dict())
        assert torch.equal(cached, book.generate_text_simple(theirs, prompt, 15, context_size=12))


# -- what the cache holds ---------------------------------------------------------------------

def test_cache_holds_only_the_kv_heads_rotated_at_their_positions(make_spec):
    spec = make_spec(model={"emb_dim": 32}, positional="rope",
                     attention={"name": "gqa", "n_kv_heads": 2})
    model = explorer.build_model(spec).eval()
    idx = tokens(3, 10, vocab=97)
    cache = ModelCache(2, max_len=16)
    with torch.no_grad():
        model(idx, cache=cache)
        block = model.trf_blocks[0]
        att = block.att
        # Layer 0's keys, by hand: W_key on the normalised embeddings, 2 heads of 8, then RoPE
        # rotating the pair (j, j + 4) of head dim by p * 10000^(-j/4).
        h = block.norm1(model.tok_emb(idx))  # RoPE adds nothing to the embeddings
        k = att.W_key(h).view(3, 10, 2, 8).transpose(1, 2)  # (B, nkv, T, hs)
        p = torch.arange(10.0)[:, None]
        angle = p * 10000.0 ** (-torch.arange(4.0) / 4)  # (T, 4)
        cos, sin = angle.cos(), angle.sin()
        k1, k2 = k[..., :4], k[..., 4:]
        rotated = torch.cat((k1 * cos - k2 * sin, k1 * sin + k2 * cos), dim=-1)
        v = att.W_value(h).view(3, 10, 2, 8).transpose(1, 2)
    layer = cache[0]
    assert layer.keys.shape == layer.values.shape == (3, 2, 16, 8)  # (B, n_kv_heads, max_len, hs)
    assert layer.length == cache.offset == 10
    torch.testing.assert_close(layer.keys[:, :, :10], rotated, atol=1e-6, rtol=0)
    torch.testing.assert_close(layer.values[:, :, :10], v, atol=1e-6, rtol=0)
    assert layer.positions[:10].tolist() == list(range(10))


def test_sliding_window_cache_is_a_ring_of_window_slots(make_spec):
    spec = make_spec(positional="alibi", attention={"name": "gqa", "n_kv_heads": 1, "window": 4})
    model = explorer.build_model(spec).eval()
    cache = ModelCache(2, max_len=32)
    idx = tokens(1, 11, vocab=97)
    with torch.no_grad():
        model(idx[:, :10], cache=cache)
        layer = cache[1]
        assert layer.keys.shape == (1, 1, 4, 4)  # 4 slots, one key/value head of 4
        assert layer.positions.tolist() == [8, 9, 6, 7]  # position p in slot p % 4
        model(idx[:, 10:], cache=cache)
        assert layer.positions.tolist() == [8, 9, 10, 7]
    assert cache.offset == 11


def test_cache_errors_say_what_overflowed(make_spec):
    model = explorer.build_model(make_spec(model={"context_length": 12})).eval()
    cache = ModelCache(2, max_len=12)
    with torch.no_grad():
        model(tokens(1, 10, vocab=97), cache=cache)
        with pytest.raises(ValueError, match="length 3 after 10 cached tokens, context_length "
                                             "is only 12"):
            model(tokens(1, 3, vocab=97), cache=cache)
        small = ModelCache(2, max_len=5)
        with pytest.raises(ValueError, match="KV cache holds 5 positions: cannot add 6 tokens "
                                             "after 0"):
            model(tokens(1, 6, vocab=97), cache=small)
        # A ring of window slots never fills; one cut short by max_len does.
        ring = KVCache(max_len=5)
        k = torch.randn(1, 1, 4, 2)
        ring.update(k, k, torch.arange(4), window=3)
        ring.update(k, k, torch.arange(4, 8), window=3)
        assert ring.positions.tolist() == [6, 7, 5]
        short = KVCache(max_len=5)
        short.update(k, k, torch.arange(4), window=8)
        with pytest.raises(ValueError, match="holds 5 positions: cannot add 4 tokens after 4"):
            short.update(k, k, torch.arange(4, 8), window=8)
        forgetful = ModelCache(2, max_len=12)
        model.trf_blocks[1].forward = lambda x, pos, positions, cache=None: x
        with pytest.raises(RuntimeError, match=r"block 1 did not update its KV cache \(0 tokens "
                                               r"stored, 4 expected\)"):
            model(tokens(1, 4, vocab=97), cache=forgetful)


# -- impl: auto and book ----------------------------------------------------------------------

@pytest.fixture
def sdpa_calls(monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get("dropout_p", 0.0))
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    return calls


@pytest.mark.parametrize("impl, drop_rate, training, fused", [
    ("auto", 0.1, True, True),  # training with dropout: the kernel's own dropout
    ("auto", 0.1, False, True),  # eval: no dropout, the fused kernel
    ("book", 0.1, True, False),  # dropout active: the book's path, its dropout masks
    ("book", 0.1, False, True),
    ("book", 0.0, True, True),  # training without dropout
    ("manual", 0.0, False, False),
    ("sdpa", 0.1, True, True),
])
def test_impl_picks_sdpa_or_the_books_path(make_spec, sdpa_calls, impl, drop_rate, training,
                                           fused):
    spec = make_spec(model={"drop_rate": drop_rate}, attention={"name": "mha", "impl": impl})
    model = explorer.build_model(spec).train(training)
    assert spec.components["attention"].params["impl"] == impl
    with torch.no_grad():
        model(tokens(1, 8, vocab=97))
    expected_p = drop_rate if training else 0.0
    assert sdpa_calls == ([expected_p] * 2 if fused else [])  # one call per block


def test_book_agrees_with_the_books_path_and_is_it_in_training(make_spec):
    spec = make_spec(model={"drop_rate": 0.1}, attention={"name": "mha", "impl": "book"})
    book = explorer.build_model(spec).eval()
    manual = explorer.build_model(make_spec(model={"drop_rate": 0.1},
                                            attention={"name": "mha", "impl": "manual"})).eval()
    manual.load_state_dict(book.state_dict())
    idx = tokens(2, 20, vocab=97)
    with torch.no_grad():
        torch.testing.assert_close(book(idx), manual(idx), atol=1e-5, rtol=0)
    book.train(), manual.train()
    torch.manual_seed(3)
    first = book(idx)
    torch.manual_seed(3)
    assert torch.equal(first, manual(idx))  # training with dropout: the book's path exactly


# -- the Python API's checks ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": -0.5}, r"temperature must be >= 0 \(0 = greedy\), got -0.5"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0.0"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\], got 1.5"),
    ({"top_k": -1}, "top_k must be >= 1 .*got -1"),
    ({"max_new_tokens": -2}, "max_new_tokens must be >= 0, got -2"),
])
def test_bad_sampling_settings_raise_before_any_work(make_spec, kwargs, message):
    model = explorer.build_model(make_spec())
    args = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(explorer.ExplorerError, match=message):
        explorer.generate_stream(model, tokens(1, 4, vocab=97), **args)  # not even iterated


# -- explorer generate ------------------------------------------------------------------------

GPT2_TINY = ["--set", "model.n_layers=1", "--set", "model.emb_dim=16", "--set",
             "model.n_heads=2", "--set", "model.context_length=32"]


def expected_ids(path, prompt, n, *overrides, **sample):
    spec = explorer.load_spec(path, overrides=overrides)
    tok = explorer.get_tokenizer(spec.tokenizer)
    model = explorer.build_model(spec).eval()
    out = explorer.generate(model, torch.tensor([tok.encode(prompt)]), n, **sample)
    return tok, out[0].tolist()


def test_cli_streams_text_as_tokens_come(capsys, monkeypatch):
    import click

    import explorer.model.generation as generation

    events = []
    real_stream, real_echo = generation.generate_stream, click.echo

    def stream(*args, **kwargs):
        for token in real_stream(*args, **kwargs):
            events.append(("token", int(token)))
            yield token

    def echo(message=None, nl=True, **kwargs):
        events.append(("text", message))
        real_echo(message, nl=nl, **kwargs)

    monkeypatch.setattr(generation, "generate_stream", stream)
    monkeypatch.setattr(click, "echo", echo)
    code, out, err = run_cli(capsys, "generate", ROOT / "specs/gpt2_small.yaml", "--prompt",
                         "Hello, I am", "--max-new-tokens", 8, *GPT2_TINY)
    assert code == 0, err
    seen = list(events)  # expected_ids below goes through the spy too
    tok, ids = expected_ids(ROOT / "specs/gpt2_small.yaml", "Hello, I am", 8,
                            *[a for a in GPT2_TINY if a != "--set"])
    assert out == tok.decode(ids) + "\n"
    kinds = [kind for kind, _ in seen]
    # Text is printed between tokens, not all at the end: the first piece after the prompt
    # comes before the last token is chosen.
    assert kinds[0] == "text" and seen[0][1] == "Hello, I am"
    assert kinds.index("text", 1) < len(kinds) - 1 - kinds[::-1].index("token")
    assert [t for kind, t in seen if kind == "token"] == ids[-8:]


def test_cli_json_gives_prompt_ids_and_text(capsys):
    args = ("--temperature", 0.7, "--top-k", 20, "--top-p", 0.95, "--seed", 11)
    code, out, err = run_cli(capsys, "generate", ROOT / "specs/tiny.yaml", "--prompt", "Once upon",
                         "--max-new-tokens", 12, "--format", "json", "--set", "model.n_layers=1",
                         *args)
    assert code == 0, err
    result = json.loads(out)
    tok, ids = expected_ids(ROOT / "specs/tiny.yaml", "Once upon", 12, "model.n_layers=1",
                            temperature=0.7, top_k=20, top_p=0.95, seed=11)
    assert result == {"prompt": "Once upon", "token_ids": ids, "text": tok.decode(ids)}
    assert ids[:9] == list(b"Once upon")


def _stream(tok, ids):
    """The pieces TextStream shows for ``ids``, and the length of every list it decoded."""
    from explorer.model.generation import TextStream

    lengths = []

    def decode(part):
        lengths.append(len(part))
        return tok.decode(part)

    stream = TextStream(decode)
    pieces = [stream.add(i) for i in ids] + [stream.close()]
    return pieces, lengths


def test_stream_holds_a_split_character_back():
    tok = explorer.get_tokenizer("gpt2")
    pieces, _ = _stream(tok, [447, 247, 82])  # "’" is two BPE tokens (bytes e2 80 | 99), then "s"
    assert tok.decode([447]) == "\ufffd" and pieces == ["", "’", "s", ""]


@pytest.mark.parametrize("tokenizer, text", [
    ("gpt2", "It’s 20°C in Zürich — naïve 🦊 日本語 “quoted” ’s"),
    ("bytes", "a 🦊 é 日本 \x01\x1c end"),  # 4-, 2- and 3-byte characters, a byte per token
])
def test_stream_decodes_only_new_tokens_and_gives_the_whole_text(tokenizer, text):
    tok = explorer.get_tokenizer(tokenizer)
    ids = tok.encode(text) * 4
    assert any(tok.decode([i]).endswith("\ufffd") for i in ids)  # characters span tokens
    pieces, lengths = _stream(tok, ids)
    assert "".join(pieces) == tok.decode(ids) == text * 4
    # Each decode sees the previous piece and the new tokens, never the whole sequence.
    assert max(lengths) <= 8 < len(ids)


def test_terminal_output_escapes_control_characters():
    from explorer.cli import terminal_safe

    assert terminal_safe("a\x1b[31mb\r\n\tc\x01\x1c\x7f\x85 é🦊") == (
        "a\\x1b[31mb\\r\n\tc\\x01\\x1c\\x7f\\x85 é🦊")


@pytest.mark.parametrize("terminal", [True, False])
def test_cli_escapes_control_bytes_only_on_a_terminal(capsys, monkeypatch, terminal):
    """specs/tiny.yaml's random weights emit control bytes (0x01, 0x1c, ...): a terminal shows
    them escaped; a pipe, like --format json, gets the exact text."""
    import explorer.cli.generate

    # Where generate looks it up: explorer.cli.generate, not the package.
    monkeypatch.setattr(explorer.cli.generate, "_stdout_is_terminal", lambda: terminal)
    code, out, err = run_cli(capsys, "generate", ROOT / "specs/tiny.yaml", "--prompt", "Hi\x01",
                         "--max-new-tokens", 40, "--set", "model.n_layers=1")
    assert code == 0, err
    tok, ids = expected_ids(ROOT / "specs/tiny.yaml", "Hi\x01", 40, "model.n_layers=1")
    text = tok.decode(ids)
    assert sum(c < "\x20" and c not in "\n\t" for c in text) >= 2  # prompt's and the model's
    if terminal:
        assert out == explorer.cli.generate.terminal_safe(text) + "\n"
        assert out.startswith("Hi\\x01")
    else:
        assert out == text + "\n"


def test_cli_refuses_weights_that_do_not_fit(capsys, monkeypatch):
    monkeypatch.setenv("EXPLORER_AVAILABLE_MEMORY", "1GiB")  # 650.4 GiB of parameters + 1.5 of masks
    code, out, err = run_cli(capsys, "generate", ROOT / "specs/gpt3_175b.yaml", "--prompt", "Hi")
    assert (code, out) == (2, "")
    assert err == (f"Error: {ROOT / 'specs/gpt3_175b.yaml'}: the weights need 652.0 GiB but only "
                   "1.0 GiB is available\n")


@pytest.mark.parametrize("args, message", [
    (["--temperature", "-1"], r"temperature must be >= 0 \(0 = greedy\), got -1.0"),
    (["--top-p", "0"], r"top_p must be in \(0, 1\], got 0.0"),
    (["--top-p", "1.5"], r"top_p must be in \(0, 1\], got 1.5"),
    (["--max-new-tokens", "-1"], "max_new_tokens must be >= 0, got -1"),
    (["--prompt", "x" * 200], "--prompt is 200 tokens, context_length is only 128"),
    (["--prompt", ""], "--prompt is empty"),
    # Refused when the spec loads, before the prompt is even encoded.
    (["--set", "tokenizer=gpt2"], "model.vocab_size: 256 is smaller than the gpt2 tokenizer's "
                                  "50,257 tokens; use vocab_size >= 50257 or tokenizer: bytes"),
])
def test_cli_bad_input_is_one_line_exit_2(capsys, args, message):
    prompt = [] if "--prompt" in args else ["--prompt", "hello"]
    code, out, err = run_cli(capsys, "generate", ROOT / "specs/tiny.yaml", *prompt, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("Error: ")
    assert re.search(message, err), err


# -- the inference layout -----------------------------------------------------------------------

@pytest.mark.parametrize("tying", ["none", "tied"])
def test_inference_layout_changes_only_the_memory_order(make_spec, tying):
    spec = make_spec(weight_tying=tying)
    model = explorer.build_model(spec).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    idx = tokens(2, 12, vocab=97)
    with torch.no_grad():
        logits = model(idx)
        expected = explorer.generate(model, idx[:1, :4], 10)
    assert explorer.inference_layout(model) is model
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)  # same values and shapes
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    head = model.out_head.weight
    for module in linears:
        if module.weight is model.tok_emb.weight:  # a tied head: the embedding's rows stay
            assert module.weight.is_contiguous()
        else:  # (out, in) stored (in, out): F.linear multiplies by input-major rows
            assert module.weight.stride(0) == 1 and not module.weight.is_contiguous()
    assert head.is_contiguous() == (tying == "tied")
    with torch.no_grad():
        torch.testing.assert_close(model(idx), logits, atol=1e-6, rtol=0)
        assert torch.equal(explorer.generate(model, idx[:1, :4], 10), expected)


def test_generate_command_uses_the_inference_layout(monkeypatch, capsys):
    from explorer.model import gpt as model_module

    laid_out = []
    real = model_module.inference_layout
    monkeypatch.setattr(model_module, "inference_layout",
                        lambda m: laid_out.append(m) or real(m))
    with pytest.raises(SystemExit) as done:
        main(["generate", "specs/tiny.yaml", "--prompt", "Hi", "--max-new-tokens", "3",
              "--format", "json"])
    assert done.value.code == 0 and len(laid_out) == 1
    assert len(json.loads(capsys.readouterr().out)["token_ids"]) == 5


@pytest.mark.parametrize("attention, qkv_bias", [("mha", False), ("gqa", True)])
def test_inference_layout_projects_queries_keys_and_values_in_one_product(make_spec, attention,
                                                                          qkv_bias):
    spec = make_spec(model={"qkv_bias": qkv_bias}, attention={"name": attention})
    model = explorer.build_model(spec).eval()
    att = model.trf_blocks[0].att
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = [p(x) for p in (att.W_query, att.W_key, att.W_value)]
    explorer.inference_layout(model)
    weight, bias = att.fused_qkv
    assert weight.shape == (16, sum(e.shape[-1] for e in expected)) and weight.is_contiguous()
    assert (bias is not None) == qkv_bias
    calls = []
    for p in (att.W_query, att.W_key, att.W_value):
        p.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        fused = att.project(x)
    assert calls == []  # one product, not three
    for ours, theirs in zip(fused, expected):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    att.project(x)  # with gradients wanted: the three Linears, whose weights get them
    assert len(calls) == 3
    att.W_key.weight.data = att.W_key.weight.data.clone()  # no longer a column of fused_qkv
    with torch.no_grad():
        att.project(x)
    assert len(calls) == 6


def test_a_mixer_with_new_cache_gets_its_own_state_in_the_model_cache():
    """ModelCache.for_model asks each block's mixer for its cache (explorer.model.contracts):
    a recurrent mixer's new_cache, else a KVCache."""
    from torch import nn

    from explorer.model.kv_cache import KVCache, ModelCache, RecurrentState

    class Mixer(nn.Module):
        explorer_kind = "attention"

        def new_cache(self, max_len):
            return RecurrentState(max_len)

    class Attention(nn.Module):
        explorer_kind = "attention"

    class Block(nn.Module):
        def __init__(self, mixer):
            super().__init__()
            self.att = mixer

    model = nn.Module()
    model.trf_blocks = nn.Sequential(Block(Mixer()), Block(Attention()))
    cache = ModelCache.for_model(model, max_len=8)
    assert [type(layer) for layer in cache.layers] == [RecurrentState, KVCache]
    cache[0].advance(3)
    cache[1].length = 3
    cache.advance(3)
    assert cache.offset == 3
