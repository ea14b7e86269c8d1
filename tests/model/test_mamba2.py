"""Mamba-2's SSD mixer (``attention: mamba2``) and the one-sublayer blocks (``ffn: none``,
``attention: none``): the chunked scan equals the token-by-token recurrence, cached generation
equals uncached, a spec trains, the FLOPs method equals FlopCounterMode, and a block without a
sublayer has no norm for it."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import explorer
from explorer.model.kv_cache import ModelCache, RecurrentState
from tests.helpers import TINY_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")

# 4 heads of 8 in 2 groups (inner 32 = 2 x emb_dim 16), a state of 4, chunks of 5: sequences
# of 13 tokens end mid-chunk.
MAMBA = {"name": "mamba2", "head_dim": 8, "d_state": 4, "n_groups": 2, "chunk_size": 5}


@pytest.fixture
def mamba_spec(make_spec):
    def make(attention=None, **components):
        return make_spec(norm="rmsnorm", positional="none", ffn="none",
                         attention={**MAMBA, **(attention or {})}, **components)
    return make


def mixer_of(spec, seed=0):
    model = explorer.build_model(spec, seed=seed).eval()
    att = model.trf_blocks[0].att
    with torch.no_grad():  # decays and steps well apart, so the state matters
        att.A_log.copy_(torch.linspace(-1.0, 1.0, att.n_heads))
        att.dt_bias.copy_(torch.linspace(-2.0, 1.0, att.n_heads))
    return model, att


def test_the_chunked_scan_equals_the_recurrence_token_by_token(mamba_spec):
    _, att = mixer_of(mamba_spec())
    x = torch.randn(2, 13, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        chunked = att(x, None, None)
        recurrent = att.recurrent(x)
    assert chunked.abs().max() > 0.1
    torch.testing.assert_close(chunked, recurrent, atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk_size", [1, 3, 13, 64])
def test_any_chunk_size_gives_the_same_outputs(mamba_spec, chunk_size):
    _, att = mixer_of(mamba_spec())
    _, other = mixer_of(mamba_spec({"chunk_size": chunk_size}))
    x = torch.randn(2, 13, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(other(x, None, None), att(x, None, None), atol=1e-5, rtol=0)


def test_a_prompt_then_tokens_through_the_state_equal_one_forward(mamba_spec):
    """Chunked over a 7-token prompt (the state and the convolution's inputs carried), then one
    token at a time (the recurrence), then a 3-token chunk: the outputs of one forward."""
    _, att = mixer_of(mamba_spec())
    x = torch.randn(2, 13, 16, generator=torch.Generator().manual_seed(2))
    state = att.new_cache(13)
    with torch.no_grad():
        full = att(x, None, None)
        parts, start = [], 0
        for size in (7, 1, 1, 1, 3):
            parts.append(att(x[:, start:start + size], None, None, cache=state))
            start += size
    assert isinstance(state, RecurrentState) and state.length == 13
    assert state.tensors["ssm"].shape == (2, 4, 8, 4)  # (B, heads, head_dim, d_state)
    assert state.tensors["conv"].shape == (2, 3, 32 + 2 * 2 * 4)  # (B, kernel - 1, conv_dim)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=0)


def test_a_hand_written_recurrence_gives_the_same_outputs(mamba_spec):
    """One head, one group, no convolution effect checked separately: the SSD output y_t =
    C_t . h_t + D x_t with h_t = exp(dt A) h_{t-1} + dt x_t B_t, written out in plain loops."""
    from explorer.plugins.attention.mamba2 import ssd_chunked

    gen = torch.Generator().manual_seed(3)
    b, t, h, p, n = 1, 9, 2, 3, 4
    x, B, C = (torch.randn(b, t, h, k, generator=gen) for k in (p, n, n))
    dt = torch.rand(b, t, h, generator=gen) + 0.1
    A = -torch.tensor([0.5, 2.0])
    y, final = ssd_chunked(x, dt, A, B, C, 4, torch.zeros(b, h, p, n))
    state = torch.zeros(h, p, n)
    for i in range(t):
        for head in range(h):
            state[head] = (torch.exp(dt[0, i, head] * A[head]) * state[head]
                           + dt[0, i, head] * torch.outer(x[0, i, head], B[0, i, head]))
            torch.testing.assert_close(y[0, i, head], state[head] @ C[0, i, head], atol=1e-5,
                                       rtol=0)
    torch.testing.assert_close(final[0], state, atol=1e-5, rtol=0)


def test_cached_greedy_generation_gives_the_uncached_tokens(mamba_spec):
    model, _ = mixer_of(mamba_spec())
    prompt = torch.randint(0, 256, (2, 6), generator=torch.Generator().manual_seed(4))
    cached = explorer.generate(model, prompt, max_new_tokens=20)
    uncached = explorer.generate(model, prompt, 20, use_cache=False)
    assert torch.equal(cached, uncached)
    cache = ModelCache.for_model(model, 32)
    assert all(isinstance(layer, RecurrentState) for layer in cache.layers)


def test_a_mamba2_spec_trains(mamba_spec):
    spec = mamba_spec()
    model = explorer.build_model(spec)
    config = explorer.TrainConfig(steps=30, batch_size=4, seq_len=32, eval_every=30,
                                  eval_tokens=512, lr=3e-3)
    result = explorer.train(model, spec, config)
    losses = result["batch_losses"]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5


def test_the_flops_method_counts_what_flop_counter_mode_adds_to_the_matrices(mamba_spec):
    """FlopCounterMode's count of a forward = 2 x the weight matrices' multiply-adds per token
    (the depthwise convolution's included) + explorer_flops, at lengths below, at and across
    the chunk size."""
    _, att = mixer_of(mamba_spec())
    matrices = sum(p.numel() for p in att.parameters() if p.dim() >= 2)
    for length in (3, 5, 13):
        x = torch.randn(2, length, 16)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            att(x, None, None)
        assert counter.get_total_flops() == (2 * 2 * length * matrices
                                             + att.explorer_flops(2, length))


def test_the_mixer_reports_its_state_size_and_no_kv_cache(mamba_spec):
    _, att = mixer_of(mamba_spec())
    assert (att.n_heads, att.n_kv_heads, att.head_dim, att.window) == (4, 0, 8, 0)
    assert att.kv_values_per_token == 0
    conv_dim = 32 + 2 * 2 * 4  # x, then B and C of each group
    assert att.state_values_per_sequence == conv_dim * 3 + 4 * 8 * 4


def test_a_mixer_only_block_holds_one_norm(mamba_spec):
    model = explorer.build_model(mamba_spec())
    block = model.trf_blocks[0]
    assert isinstance(block.norm2, torch.nn.Identity) and not list(block.ff.parameters())
    names = {n.split(".")[0] for n, _ in block.named_parameters()}
    assert names == {"att", "norm1"}


def test_an_mlp_only_block_holds_one_norm_and_caches_nothing(write_spec):
    """attention: none (Nemotron-H's MLP layers) on the odd layers of a gqa model: those blocks
    have the MLP and norm2 only, and cached generation still equals uncached."""
    spec = explorer.load_spec(write_spec({
        "name": "tiny", "seed": 1, "tokenizer": "bytes", "model": TINY_MODEL,
        "components": {"norm": "rmsnorm", "attention": {"name": "gqa", "n_kv_heads": 2}},
        "layers": [{"every": 2, "offset": 1, "components": {"attention": "none"}}]}))
    model = explorer.build_model(spec).eval()
    block = model.trf_blocks[1]
    assert isinstance(block.norm1, torch.nn.Identity)
    assert {n.split(".")[0] for n, _ in block.named_parameters()} == {"ff", "norm2"}
    prompt = torch.randint(0, 256, (1, 5), generator=torch.Generator().manual_seed(5))
    assert torch.equal(explorer.generate(model, prompt, 8),
                       explorer.generate(model, prompt, 8, use_cache=False))


def test_a_block_with_neither_sublayer_is_refused(make_spec):
    with pytest.raises(explorer.SpecError, match="none with ffn none: the block would compute "
                                                 "nothing"):
        make_spec(attention="none", ffn="none")


def test_heads_that_do_not_split_into_groups_are_refused(mamba_spec):
    with pytest.raises(explorer.SpecError, match="n_groups: 3 groups cannot share 4 heads"):
        mamba_spec({"n_groups": 3})


def test_gradflow_and_params_see_each_one_sublayer_block(write_spec):
    """A Nemotron-H-like stack (Mamba, MLP, attention layers): gradflow reports each block's
    one sublayer, with a gradient; params counts no norm for the absent ones."""
    spec = explorer.load_spec(write_spec({
        "name": "hybrid", "seed": 1, "tokenizer": "bytes", "model": TINY_MODEL | {"n_layers": 3},
        "components": {"norm": "rmsnorm", "positional": "none", "ffn": "none", "attention": MAMBA},
        "layers": [{"layers": [1], "components": {"attention": "none", "ffn": "mlp"}},
                   {"layers": [2], "components": {"attention": {"name": "gqa",
                                                                "n_kv_heads": 2}}}]}))
    report = explorer.analyze(spec, only=["gradflow", "params"])
    assert report["failures"] == {}
    blocks = report["analyses"]["gradflow"]["per_block"]
    assert [sorted(set(b) - {"all"}) for b in blocks] == [["attention"], ["ffn"], ["attention"]]
    assert all(0 < b["all"] < float("inf") for b in blocks)
    model = explorer.build_model(spec)
    norms = sum(p.numel() for n, p in model.named_parameters() if ".norm" in n and "att." not in n)
    assert norms == 3 * 16  # one norm of width 16 per block


def test_segment_sums_are_the_exact_sums_rounded_to_float32():
    """Log-decays down to -8 a token over 256 positions: running sums near -1000, where a
    float32 difference of two of them is off by up to about 1e-4. Every within-chunk sum is
    the exact (float64, summed pair by pair) sum rounded to float32, and above the diagonal
    -inf."""
    from explorer.plugins.attention.mamba2 import segment_sums

    a = -8 * torch.rand(2, 256, generator=torch.Generator().manual_seed(0))
    sums = segment_sums(a)
    exact = torch.full((2, 256, 256), -torch.inf, dtype=torch.float64)
    wide = a.double()
    for i in range(256):
        exact[:, i, :i + 1] = wide[:, :i + 1].flip(-1).cumsum(-1).flip(-1) - wide[:, :i + 1]
    below = torch.isfinite(exact)
    assert sums.dtype == torch.float32 and exact[below].min() < -900
    assert torch.equal(torch.isfinite(sums), below)
    ulp = torch.finfo(torch.float32).eps * exact[below].abs().clamp(min=1)
    assert ((sums.double()[below] - exact[below]).abs() <= ulp).all()
