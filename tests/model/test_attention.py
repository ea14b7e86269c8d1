"""Attention components: the book's MHA bit for bit, GQA/MQA, sliding windows, QK-norm, SDPA."""

import itertools

import pytest
import torch

import explorer
from explorer.model.contracts import causal_mask

from tests.helpers import TINY_MODEL

V = TINY_MODEL["vocab_size"]  # make_spec's vocabulary, also BOOK_CFG's

REGISTRY = explorer.get_plugin_manager(entry_points=False).registry()
ATTENTION = REGISTRY.names("attention")
POSITIONAL = REGISTRY.names("positional")
# Softmax attentions (they have kernels to choose: impl) against every positional encoding; the
# token mixers that take attention's place use no positions, so one encoding is enough for them.
SOFTMAX = [name for name in ATTENTION if REGISTRY.component("attention", name).param("impl")]
WITH_POSITIONS = [(a, p) for a in ATTENTION for p in (POSITIONAL if a in SOFTMAX else ["none"])]


# Mixers whose defaults do not fit the tiny test model (Mamba-2's 64-channel heads)
TINY_PARAMS = {"mamba2": {"head_dim": 8, "d_state": 4}}


def attention_choice(name, **params):
    """``{name, **params}`` keeping only the params this attention component declares."""
    component = REGISTRY.component("attention", name)
    params = {**TINY_PARAMS.get(name, {}), **params}
    return {"name": name, **{k: v for k, v in params.items() if component.param(k)}}


def build(make_spec, attention="mha", positional="learned", model=None, seed=0, **params):
    spec = make_spec(model=model, positional=positional,
                     attention=attention_choice(attention, **params))
    return explorer.build_model(spec, seed=seed).eval()


def tokens(*shape, seed=0):
    return torch.randint(0, V, shape, generator=torch.Generator().manual_seed(seed))


# -- the book ---------------------------------------------------------------------------------

book = pytest.importorskip("llms_from_scratch.ch04")
BOOK_CFG = {"vocab_size": V, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
            "drop_rate": 0.1, "qkv_bias": False}


# The book's LayerNorm and GELU arithmetic in training (impl auto computes the same function
# with torch's kernels, to ~1e-6).
BOOK_LAYERS = {"norm": {"name": "layernorm", "impl": "book"},
               "activation": {"name": "gelu_tanh", "impl": "book"}}


@pytest.mark.parametrize("attention", [{"name": "mha", "impl": "book"},
                                       {"name": "mha", "impl": "manual", "window": 0},
                                       {"name": "gqa", "n_kv_heads": 4, "impl": "book"}])
def test_mha_is_the_books_bit_for_bit_with_dropout(make_spec, attention):
    ours = explorer.build_model(make_spec(model=BOOK_CFG, attention=attention, **BOOK_LAYERS),
                                seed=123)
    torch.manual_seed(123)
    theirs = book.GPTModel(BOOK_CFG)
    a, b = ours.state_dict(), theirs.state_dict()
    if attention["name"] == "gqa":  # the same weights, without the book's mask buffer
        b = {k: v for k, v in b.items() if not k.endswith("att.mask")}
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    batch = tokens(2, 16)
    torch.manual_seed(7)
    out_ours = ours(batch)  # training mode: dropout 0.1 on embeddings, attention and shortcuts
    torch.manual_seed(7)
    out_theirs = theirs(batch)
    assert torch.equal(out_ours, out_theirs)


# -- grouped-query attention ------------------------------------------------------------------

@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_gqa_with_n_heads_kv_heads_equals_mha(make_spec, impl):
    mha = build(make_spec, "mha", impl=impl, seed=1)
    gqa = build(make_spec, "gqa", n_kv_heads=4, impl=impl, seed=2)
    state = {k: v for k, v in mha.state_dict().items() if not k.endswith("att.mask")}
    gqa.load_state_dict(state, strict=True)
    batch = tokens(2, 12)
    assert torch.equal(gqa(batch), mha(batch))


@pytest.mark.parametrize("n_kv_heads, qkv_bias",
                         list(itertools.product([1, 2, 4], [False, True])))
def test_gqa_parameter_count_closed_form(make_spec, n_kv_heads, qkv_bias):
    model = build(make_spec, "gqa", n_kv_heads=n_kv_heads, model={"qkv_bias": qkv_bias})
    h, a, d, k = 16, 4, 4, n_kv_heads  # emb_dim, heads, head dim, kv heads
    expected = 2 * h * a * d + 2 * h * k * d + h + (a * d + 2 * k * d if qkv_bias else 0)
    att = model.trf_blocks[0].att
    assert sum(p.numel() for p in att.parameters()) == expected
    assert att.W_key.weight.shape == (k * d, h)


def reference_attention(att, x, slopes=None, window=0):
    """Causal attention written head by head, for an attention module's weights (eval mode)."""
    b, t, _ = x.shape
    a, k, d = att.n_heads, att.n_kv_heads, att.head_dim
    q = att.W_query(x).view(b, t, a, d)
    key = att.W_key(x).view(b, t, k, d)
    val = att.W_value(x).view(b, t, k, d)
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    hidden = (j > i) | ((i - j >= window) if window else False)
    heads = []
    for head in range(a):
        kv = head // (a // k)  # consecutive query heads share a key/value head
        scores = q[:, :, head] @ key[:, :, kv].transpose(1, 2) / d ** 0.5  # (B, T, T)
        if slopes is not None:
            scores = scores - slopes[head] * (i - j)
        weights = torch.softmax(scores.masked_fill(hidden, -torch.inf), dim=-1)
        heads.append(weights @ val[:, :, kv])
    return att.out_proj(torch.cat(heads, dim=-1))


@pytest.mark.parametrize("n_kv_heads, positional, window, impl", list(itertools.product(
    [1, 2, 4], ["none", "alibi"], [0, 3], ["manual", "sdpa"])))
def test_gqa_against_a_head_by_head_reference(make_spec, n_kv_heads, positional, window, impl):
    model = build(make_spec, "gqa", positional, n_kv_heads=n_kv_heads, window=window, impl=impl)
    att = model.trf_blocks[0].att
    x = torch.randn(2, 9, 16, generator=torch.Generator().manual_seed(0))
    slopes = [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8] if positional == "alibi" else None  # 4 heads
    with torch.no_grad():
        out = att(x, model.pos_emb, torch.arange(9))
        torch.testing.assert_close(out, reference_attention(att, x, slopes, window))


@pytest.mark.parametrize("n_kv_heads, problem", [
    (0, "must be >= 1, got 0"),
    (3, "3 key/value heads cannot be shared by n_heads 4 query heads; a divisor of n_heads: 1, 2, 4"),
    (8, "8 key/value heads cannot be shared by n_heads 4 query heads; a divisor of n_heads: 1, 2, 4"),
])
def test_bad_n_kv_heads_is_refused_when_the_spec_loads(make_spec, n_kv_heads, problem):
    # The Param's range and gqa's check, before any model is built (the factory used to judge).
    with pytest.raises(explorer.SpecError) as info:
        make_spec(attention={"name": "gqa", "n_kv_heads": n_kv_heads})
    assert str(info.value).endswith(f"components.attention.n_kv_heads: {problem}")


def test_negative_window_is_refused_when_the_spec_loads(make_spec):
    with pytest.raises(explorer.SpecError, match=r"components\.attention\.window: must be >= 0, got -1$"):
        make_spec(attention={"name": "mha", "window": -1})


# -- masks: causality and sliding windows -----------------------------------------------------

def test_causal_mask_from_absolute_positions():
    # Queries at positions 5 and 6 (a KV cache's last two tokens) against keys 0..6, window 3.
    mask = causal_mask(torch.tensor([5, 6]), torch.arange(7), window=3)
    assert mask.int().tolist() == [[1, 1, 1, 0, 0, 0, 1], [1, 1, 1, 1, 0, 0, 0]]
    mask = causal_mask(torch.arange(3), torch.arange(3))
    assert mask.int().tolist() == [[0, 1, 1], [0, 0, 1], [0, 0, 0]]


@pytest.mark.parametrize("attention, positional, impl, window", [
    (a, p, impl, window) for a, p in WITH_POSITIONS
    for impl, window in itertools.product(["manual", "sdpa"], [0, 3])
    if a in SOFTMAX or (impl, window) == ("manual", 0)])
def test_changing_a_token_never_changes_earlier_logits(make_spec, attention, positional, impl, window):
    model = build(make_spec, attention, positional, impl=impl, window=window)
    batch = tokens(1, 10)
    with torch.no_grad():
        before = model(batch)
        for t in (0, 4, 8):
            changed = batch.clone()
            changed[0, t + 1] = (changed[0, t + 1] + 1) % V
            after = model(changed)
            torch.testing.assert_close(after[:, :t + 1], before[:, :t + 1], atol=1e-6, rtol=0)
            assert not torch.allclose(after[:, t + 1], before[:, t + 1])


@pytest.mark.parametrize("positional, impl",
                         list(itertools.product(POSITIONAL, ["manual", "sdpa"])))
def test_sliding_window_hides_tokens_outside_it(make_spec, positional, impl):
    w, t = 3, 9
    batch = tokens(1, 10)

    def logits_at_t(model, changed_position):
        changed = batch.clone()
        changed[0, changed_position] = (changed[0, changed_position] + 1) % V
        with torch.no_grad():
            return model(batch)[0, t], model(changed)[0, t]

    # One layer: position t sees tokens t-w+1 .. t.
    one = build(make_spec, "mha", positional, impl=impl, window=w, model={"n_layers": 1})
    for s in range(t - w + 1):
        torch.testing.assert_close(*logits_at_t(one, s), atol=1e-6, rtol=0)
    assert not torch.allclose(*logits_at_t(one, t - w + 1))
    # Two layers: the window compounds, position t sees tokens t-2(w-1) .. t.
    two = build(make_spec, "mha", positional, impl=impl, window=w, model={"n_layers": 2})
    for s in range(t - 2 * (w - 1)):
        torch.testing.assert_close(*logits_at_t(two, s), atol=1e-6, rtol=0)
    assert not torch.allclose(*logits_at_t(two, t - 2 * (w - 1)))
    # No window: the first token still matters.
    full = build(make_spec, "mha", positional, impl=impl, window=0, model={"n_layers": 1})
    assert not torch.allclose(*logits_at_t(full, 0))


# -- manual vs SDPA, QK-norm, dropout ---------------------------------------------------------

@pytest.mark.parametrize("attention, positional, window, qk_norm", list(itertools.product(
    SOFTMAX, POSITIONAL, [0, 3], [False, True])))
def test_manual_and_sdpa_agree(make_spec, attention, positional, window, qk_norm):
    params = {"window": window, "qk_norm": qk_norm, "n_kv_heads": 2}
    manual = build(make_spec, attention, positional, impl="manual", **params)
    sdpa = build(make_spec, attention, positional, impl="sdpa", **params)
    sdpa.load_state_dict(manual.state_dict())
    batch = tokens(2, 12)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(batch), manual(batch), atol=1e-5, rtol=0)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_attention_dropout_only_in_training(make_spec, impl):
    model = build(make_spec, "mha", impl=impl, model={"drop_rate": 0.5})
    reference = build(make_spec, "mha", impl="manual")  # same seed: same weights, no dropout
    att, ref = model.trf_blocks[0].att, reference.trf_blocks[0].att
    x, positions = torch.randn(1, 12, 16), torch.arange(12)
    with torch.no_grad():
        expected = ref(x, reference.pos_emb, positions)
        torch.testing.assert_close(att(x, model.pos_emb, positions), expected, atol=1e-6, rtol=0)
        att.train()
        torch.manual_seed(0)
        first = att(x, model.pos_emb, positions)
        assert not torch.allclose(first, expected)
        assert not torch.allclose(first, att(x, model.pos_emb, positions))  # a fresh mask each call


@pytest.mark.parametrize("attention", [name for name in ATTENTION
                                       if REGISTRY.component("attention", name).param("qk_norm")])
def test_qk_norm_makes_attention_blind_to_query_and_key_scale(make_spec, attention):
    for qk_norm in (True, False):
        model = build(make_spec, attention, qk_norm=qk_norm, n_kv_heads=2)
        att = model.trf_blocks[0].att
        x = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(0))
        positions = torch.arange(8)
        with torch.no_grad():
            before = att(x, model.pos_emb, positions)
            att.W_query.weight *= 5.0
            att.W_key.weight *= 5.0
            after = att(x, model.pos_emb, positions)
        if qk_norm:  # LayerNorm per head of 4: (5q - mean) / std is q's, up to eps / var
            assert att.q_norm.scale.shape == att.k_norm.scale.shape == (4,)
            torch.testing.assert_close(after, before, atol=1e-3, rtol=0)
        else:
            assert att.q_norm is None and not torch.allclose(after, before, atol=1e-2)


@pytest.mark.parametrize("positional", ["rope", "alibi", "none"])
def test_relative_schemes_do_not_care_where_the_sequence_starts(make_spec, positional):
    # What a KV cache relies on: attention at absolute positions 100.. equals attention at 0..
    model = build(make_spec, "gqa", positional, n_kv_heads=2, window=4)
    att = model.trf_blocks[0].att
    x = torch.randn(1, 10, 16)
    with torch.no_grad():
        torch.testing.assert_close(att(x, model.pos_emb, torch.arange(100, 110)),
                                   att(x, model.pos_emb, torch.arange(10)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["mha", "gqa"])
def test_out_bias_off_removes_exactly_the_output_bias(make_spec, name):
    with_bias = explorer.build_model(make_spec(attention={"name": name}))
    without = explorer.build_model(make_spec(attention={"name": name, "out_bias": False}))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    h, layers = 16, 2  # make_spec's tiny model
    assert count(with_bias) - count(without) == layers * h
    assert without.trf_blocks[0].att.out_proj.bias is None
