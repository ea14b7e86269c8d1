"""Positional encodings against their papers' formulas, computed here independently."""

import math

import pytest
import torch

import explorer
from explorer.model.contracts import PositionalEncoding

POSITIONAL = explorer.get_plugin_manager(entry_points=False).registry().names("positional")


def positional(make_spec, name, model=None, **params):
    """The model's PositionalEncoding for ``positional: {name, **params}`` on a tiny model."""
    spec = make_spec(model=model, positional={"name": name, **params})
    return explorer.build_model(spec, seed=0).pos_emb


# -- RoPE ------------------------------------------------------------------------------------

def rope_complex(x, positions, theta):
    """RoPE written with complex numbers: pair (j, j + hs/2) is z_j, turned by p * theta^(-2j/hs)."""
    hs = x.shape[-1]
    x = x.double()
    z = torch.complex(x[..., :hs // 2], x[..., hs // 2:])  # (..., T, hs/2)
    freqs = torch.tensor([theta ** (-2 * j / hs) for j in range(hs // 2)], dtype=torch.float64)
    angles = positions.double()[:, None] * freqs[None, :]  # (T, hs/2)
    z = z * torch.polar(torch.ones_like(angles), angles)
    return torch.cat((z.real, z.imag), dim=-1)


@pytest.mark.parametrize("theta", [10000.0, 500.0])
def test_rope_matches_a_complex_number_implementation(make_spec, theta):
    rope = positional(make_spec, "rope", model={"emb_dim": 32, "n_heads": 4}, theta=theta)  # hs 8
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 4, 6, 8, generator=g), torch.randn(2, 1, 6, 8, generator=g)
    positions = torch.tensor([0, 1, 2, 7, 20, 31])
    q_rot, k_rot = rope.rotate(q, k, positions)
    torch.testing.assert_close(q_rot.double(), rope_complex(q, positions, theta), atol=1e-5, rtol=0)
    torch.testing.assert_close(k_rot.double(), rope_complex(k, positions, theta), atol=1e-5, rtol=0)


def test_rope_scores_depend_only_on_relative_position_and_norms_are_kept(make_spec):
    rope = positional(make_spec, "rope", model={"emb_dim": 32, "n_heads": 4})  # hs 8
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 4, 1, 8, generator=g), torch.randn(1, 2, 1, 8, generator=g)  # GQA: 2 kv heads

    def score(p, p_k):
        q_rot, _ = rope.rotate(q, k, torch.tensor([p]))
        _, k_rot = rope.rotate(q, k, torch.tensor([p_k]))
        k_rot = k_rot.repeat_interleave(2, dim=1)
        return (q_rot * k_rot).sum(-1)  # (1, 4, 1)

    for p, p_k in [(3, 1), (5, 5), (2, 9), (10, 0)]:
        base = score(p, p_k)
        for shift in (1, 7, 100):
            torch.testing.assert_close(score(p + shift, p_k + shift), base, atol=1e-4, rtol=1e-5)
    assert not torch.allclose(score(3, 1), score(3, 2))  # the relative position does matter

    positions = torch.arange(0, 300, 10)
    q_rot, k_rot = rope.rotate(q.expand(1, 4, 30, 8), k.expand(1, 2, 30, 8), positions)
    torch.testing.assert_close(q_rot.norm(dim=-1), q.norm(dim=-1).expand(1, 4, 30))
    torch.testing.assert_close(k_rot.norm(dim=-1), k.norm(dim=-1).expand(1, 2, 30))


def test_rope_at_position_zero_is_the_identity(make_spec):
    rope = positional(make_spec, "rope")
    q, k = torch.randn(1, 4, 1, 4), torch.randn(1, 4, 1, 4)
    q_rot, k_rot = rope.rotate(q, k, torch.tensor([0]))
    assert torch.equal(q_rot, q) and torch.equal(k_rot, k)


def test_rope_needs_an_even_head_size_when_the_spec_loads(make_spec):
    with pytest.raises(explorer.SpecError, match=r"components\.positional: .*head size is odd: "
                       r"emb_dim 12 / n_heads 4 = 3; choose emb_dim / n_heads even$"):
        make_spec(positional="rope", model={"emb_dim": 12, "n_heads": 4})


@pytest.mark.parametrize("name, key", [("rope", "theta"), ("sinusoidal", "base")])
def test_positional_bases_must_be_positive_when_the_spec_loads(make_spec, name, key):
    with pytest.raises(explorer.SpecError, match=rf"components\.positional\.{key}: must be > 0, got 0\.0$"):
        make_spec(positional={"name": name, key: 0})


# -- ALiBi -----------------------------------------------------------------------------------

# Press et al. (2022): for 8 heads the slopes are 1/2, 1/4, ..., 1/256; for 12 heads, the 8-head
# slopes followed by the odd-numbered slopes of 16 heads, 2^(-8i/16) for i = 1, 3, 5, 7.
SLOPES = {
    8: [1 / 2 ** i for i in range(1, 9)],
    12: [1 / 2 ** i for i in range(1, 9)] + [2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5],
}


@pytest.mark.parametrize("n_heads", [8, 12])
def test_alibi_bias_is_slope_times_distance(make_spec, n_heads):
    alibi = positional(make_spec, "alibi", model={"emb_dim": 2 * n_heads, "n_heads": n_heads})
    slopes = SLOPES[n_heads]
    assert alibi.slopes.tolist() == pytest.approx(slopes, rel=1e-7)
    T = 6
    bias = alibi.bias(torch.arange(T), torch.arange(T))
    expected = torch.tensor([[[-m * (i - j) if j <= i else 0.0 for j in range(T)]
                              for i in range(T)] for m in slopes])
    torch.testing.assert_close(bias, expected)
    # Queries at absolute positions 5, 6 against keys 0..6 (what a KV cache would ask).
    bias = alibi.bias(torch.tensor([5, 6]), torch.arange(7))
    torch.testing.assert_close(bias[0], torch.tensor(
        [[-2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.0], [-3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0]]))


def test_alibi_slopes_for_other_head_counts():
    from explorer.plugins.positional.encodings import alibi_slopes
    assert alibi_slopes(1) == [2 ** -8]
    assert alibi_slopes(4) == [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8]
    # 6 heads: the 4-head slopes, then 8-head slopes 2^-1 and 2^-3.
    assert alibi_slopes(6) == [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]


# -- sinusoidal, learned, none ---------------------------------------------------------------

@pytest.mark.parametrize("emb_dim, n_heads", [(16, 4), (15, 3)])
def test_sinusoidal_matches_vaswani(make_spec, emb_dim, n_heads):
    sin = positional(make_spec, "sinusoidal", model={"emb_dim": emb_dim, "n_heads": n_heads})
    positions = torch.tensor([0, 1, 5, 31, 100])  # beyond context_length too: no table to outgrow
    pe = sin.embed(torch.zeros(1, len(positions), emb_dim), positions)[0]
    expected = [[math.sin(p / 10000 ** (i / emb_dim)) if i % 2 == 0
                 else math.cos(p / 10000 ** ((i - 1) / emb_dim)) for i in range(emb_dim)]
                for p in positions.tolist()]
    torch.testing.assert_close(pe, torch.tensor(expected), atol=2e-5, rtol=0)
    x = torch.randn(2, len(positions), emb_dim)
    torch.testing.assert_close(sin.embed(x, positions), x + pe)


@pytest.mark.parametrize("name", POSITIONAL)
def test_only_learned_positions_have_parameters_or_saved_state(make_spec, name):
    model = explorer.build_model(make_spec(positional=name), seed=0)
    assert isinstance(model.pos_emb, PositionalEncoding)
    pos_keys = [k for k in model.state_dict() if k.startswith("pos_emb.")]
    n_params = sum(p.numel() for p in model.pos_emb.parameters())
    if name == "learned":
        assert pos_keys == ["pos_emb.weight"] and n_params == 32 * 16  # context_length x emb_dim
    else:
        assert pos_keys == [] and n_params == 0


def test_learned_adds_the_row_of_each_position(make_spec):
    learned = positional(make_spec, "learned")
    x = torch.randn(2, 3, 16)
    positions = torch.tensor([4, 5, 6])
    assert torch.equal(learned.embed(x, positions), x + learned.weight[4:7])


def test_learned_is_initialised_like_nn_embedding(make_spec):
    learned = positional(make_spec, "learned")
    torch.manual_seed(0)
    torch.nn.Embedding(256, 16)  # the token embedding (conftest.TINY_MODEL), created first
    assert torch.equal(learned.weight, torch.nn.Embedding(32, 16).weight)


def test_none_changes_nothing(make_spec):
    nope = positional(make_spec, "none")
    x, q, k = torch.randn(2, 5, 16), torch.randn(2, 4, 5, 4), torch.randn(2, 1, 5, 4)
    positions = torch.arange(5)
    assert torch.equal(nope.embed(x, positions), x)
    q2, k2 = nope.rotate(q, k, positions)
    assert torch.equal(q2, q) and torch.equal(k2, k)
    assert nope.bias(positions, positions) is None
