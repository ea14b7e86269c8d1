"""Norms, activations and feed-forwards: each registered one against torch or a formula written here.

Norms against torch.nn.LayerNorm / torch.nn.RMSNorm / the identity; activations against
torch.nn.functional and an independent float64 formula from the ``math`` module; the gated FFN
against its hand formula with the module's own weights, Llama's published hidden sizes, and
parameter counts in closed form (formulas.md: MLP 2*h*f + f + h, gated 3*h*f).
"""

import itertools
import math

import pytest
import torch
from torch.nn import functional as F

import explorer
from explorer.cli import main

REGISTRY = explorer.get_plugin_manager(entry_points=False).registry()

# make_spec's tiny model (conftest.TINY_MODEL): V vocab, S positions, H width, L blocks.
V, S, H, L = 256, 32, 16, 2
ATTN = 3 * H * H + (H * H + H)  # mha: W_query, W_key, W_value without bias, out_proj with one
NORM_PARAMS = {"layernorm": 2 * H, "rmsnorm": H, "none": 0}  # per norm of width H


def total_params(norm="layernorm", ffn=None):
    """The tiny model's count: embedding, learned positions, L blocks (attention, ffn, 2 norms),
    the final norm and an untied head. ``ffn`` defaults to the book's MLP with f = 4h."""
    ffn = 2 * H * 4 * H + 4 * H + H if ffn is None else ffn
    return V * H + S * H + L * (ATTN + ffn + 2 * NORM_PARAMS[norm]) + NORM_PARAMS[norm] + V * H


def mlp_params(f, bias):
    return 2 * H * f + (f + H if bias else 0)


def glu_params(f, bias):
    return 3 * H * f + (2 * f + H if bias else 0)


def count(model):
    return sum(p.numel() for p in model.parameters())


def make(spec, kind, **extra):
    """The spec's component of ``kind``, built alone the way a block builds it."""
    return explorer.BuildContext(spec, spec.plugin_manager.registry()).make(kind, **extra)


def perturbed(module):
    """``module`` with every parameter moved off its init (ones and zeros hide mistakes)."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen))
    return module


# -- activations --------------------------------------------------------------------------------

def _phi(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))  # the standard normal CDF


# Each activation as a float64 formula on one number, independent of torch.
SCALAR_FORMULAS = {
    "gelu_tanh": lambda x: 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    "gelu": lambda x: x * _phi(x),
    "relu": lambda x: max(x, 0.0),
    "silu": lambda x: x / (1 + math.exp(-x)),
    "squared_relu": lambda x: max(x, 0.0) ** 2,
}

# torch's built-in for each, where there is one; Primer's squared ReLU has none, so a hand formula.
BUILTINS = {
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "squared_relu": lambda x: torch.where(x > 0, x * x, torch.zeros_like(x)),
}

# Values at a few points, rounded to 6 decimals: Phi from a normal table, sigmoid(1) = 1/(1+1/e).
PINNED = {
    "gelu": {-2.0: -2 * 0.022750, 1.0: 0.841345, 3.0: 3 * 0.998650},
    "gelu_tanh": {1.0: 0.841192},
    "silu": {1.0: 0.731059, -1.0: -0.268941},
    "relu": {-2.0: 0.0, 0.0: 0.0, 1.5: 1.5},
    "squared_relu": {-2.0: 0.0, 0.0: 0.0, 1.5: 2.25, 3.0: 9.0},
}

ACTIVATIONS = REGISTRY.names("activation")
NORMS = REGISTRY.names("norm")
FFNS = REGISTRY.names("ffn")


def test_every_registered_activation_and_norm_has_a_reference_here():
    assert set(ACTIVATIONS) == set(SCALAR_FORMULAS) == set(BUILTINS) == set(PINNED)
    assert set(NORMS) == set(NORM_PARAMS)
    assert set(FFNS) == {"mlp", "glu", "moe", "none"}


def _inputs(dtype):
    x = 3 * torch.randn(400, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return torch.cat([x, torch.tensor([0.0, -1e-3, 1e-3, -8.0, 8.0], dtype=torch.float64)]).to(dtype)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_the_independent_formula(make_spec, name):
    act = make(make_spec(activation=name), "activation")
    x = _inputs(torch.float64)
    want = torch.tensor([SCALAR_FORMULAS[name](v) for v in x.tolist()], dtype=torch.float64)
    # gelu_tanh keeps the book's float32 constant sqrt(2/pi): about 3e-8 relative off float64.
    torch.testing.assert_close(act(x), want, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_the_torch_builtin_in_float32(make_spec, name):
    act = make(make_spec(activation=name), "activation")
    x = _inputs(torch.float32)
    got = act(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, BUILTINS[name](x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_pinned_values_and_no_parameters(make_spec, name):
    act = make(make_spec(activation=name), "activation")
    points = PINNED[name]
    got = act(torch.tensor(list(points), dtype=torch.float64))
    torch.testing.assert_close(got, torch.tensor(list(points.values()), dtype=torch.float64),
                               rtol=0, atol=2e-6)
    assert count(act) == 0


@pytest.mark.parametrize("impl", ["book", "manual"])
def test_gelu_tanh_is_still_the_books_formula_bit_for_bit(make_spec, impl):
    act = make(make_spec(activation={"name": "gelu_tanh", "impl": impl}), "activation")
    act.train()  # book: the written-out formula in training
    x = _inputs(torch.float32)
    book = 0.5 * x * (1 + torch.tanh(torch.sqrt(torch.tensor(2.0 / torch.pi))
                                     * (x + 0.044715 * torch.pow(x, 3))))
    assert torch.equal(act(x), book)


# -- norms --------------------------------------------------------------------------------------

def _torch_reference(name, module, eps):
    """torch's own module with ``module``'s (perturbed) weights, or the identity for none."""
    if name == "layernorm":
        ref = torch.nn.LayerNorm(H, eps=eps)
        with torch.no_grad():
            ref.weight.copy_(module.scale)
            ref.bias.copy_(module.shift)
        return ref
    if name == "rmsnorm":
        ref = torch.nn.RMSNorm(H, eps=eps)
        with torch.no_grad():
            ref.weight.copy_(module.weight)
        return ref
    return lambda x: x


@pytest.mark.parametrize("eps", [None, 0.1])  # None: the declared default; 0.1 makes eps matter
@pytest.mark.parametrize("name", NORMS)
def test_norm_matches_torch_with_its_own_weights(make_spec, name, eps):
    params = {} if eps is None or name == "none" else {"eps": eps}
    spec = make_spec(norm={"name": name, **params})
    norm = perturbed(make(spec, "norm", dim=H))
    eps = spec.components["norm"].params.get("eps")
    x = 0.3 * torch.randn(3, 5, H, generator=torch.Generator().manual_seed(1)) + 0.2
    torch.testing.assert_close(norm(x), _torch_reference(name, norm, eps)(x), rtol=1e-6, atol=1e-6)
    assert count(norm) == NORM_PARAMS[name]


def test_rmsnorm_default_eps_weight_of_ones_and_formula(make_spec):
    spec = make_spec(norm="rmsnorm")
    assert spec.components["norm"].params == {"eps": 1e-6, "unit_offset": False}
    norm = make(spec, "norm", dim=H)
    assert list(norm.state_dict()) == ["weight"] and torch.equal(norm.weight, torch.ones(H))
    # By hand on one row: [3, 4] has mean square 12.5, so it becomes [3, 4] / sqrt(12.5 + eps).
    two = make(spec, "norm", dim=2)
    with torch.no_grad():
        two.weight.copy_(torch.tensor([2.0, -1.0]))
    want = torch.tensor([2 * 3 / math.sqrt(12.5 + 1e-6), -4 / math.sqrt(12.5 + 1e-6)])
    torch.testing.assert_close(two(torch.tensor([3.0, 4.0])), want, rtol=1e-6, atol=0)


def test_rmsnorm_in_bfloat16_normalises_in_float32_and_returns_bfloat16(make_spec):
    norm = perturbed(make(make_spec(norm="rmsnorm"), "norm", dim=H))
    x = (100 * torch.randn(4, H, generator=torch.Generator().manual_seed(2))).bfloat16()
    unscaled = torch.nn.RMSNorm(H, eps=1e-6, elementwise_affine=False)
    norm.bfloat16()
    got = norm(x)
    assert got.dtype == torch.bfloat16
    want = norm.weight * unscaled(x.float()).bfloat16()  # Llama: normalise in fp32, cast, scale
    assert torch.equal(got, want)


def test_none_norm_is_the_identity_with_no_parameters(make_spec):
    spec = make_spec(norm="none")
    norm = make(spec, "norm", dim=H)
    x = torch.randn(2, 3, H)
    assert torch.equal(norm(x), x) and count(norm) == 0 and norm.state_dict() == {}
    model = explorer.build_model(spec)
    assert count(model) == total_params("none") == total_params() - (2 * L + 1) * 2 * H


@pytest.mark.parametrize("name", NORMS)
def test_norm_count_in_a_whole_model(make_spec, name):
    assert count(explorer.build_model(make_spec(norm=name))) == total_params(name)


# -- feed-forwards ------------------------------------------------------------------------------

# The activation again, in torch but written out here (not the component's code).
TORCH_FORMULAS = {
    "gelu_tanh": lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
    "relu": lambda x: x.clamp(min=0),
    "silu": lambda x: x * torch.sigmoid(x),
    "squared_relu": lambda x: x.clamp(min=0) ** 2,
}


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_glu_is_its_hand_formula_with_its_own_weights(make_spec, act, bias):
    """SwiGLU with silu, GeGLU with gelu, ReGLU with relu: W2 (act(W1 x) * W3 x)."""
    spec = make_spec(ffn={"name": "glu", "hidden": 32, "bias": bias}, activation=act)
    ff = explorer.build_model(spec).trf_blocks[0].ff
    w1, w3, w2 = ff.fc_1, ff.fc_2, ff.proj
    assert (w1.weight.shape, w3.weight.shape, w2.weight.shape) == ((32, H), (32, H), (H, 32))
    if bias:
        perturbed(ff)  # nonzero biases on all three
    assert [n for n, _ in ff.named_parameters()] == (
        ["fc_1.weight", "fc_1.bias", "fc_2.weight", "fc_2.bias", "proj.weight", "proj.bias"]
        if bias else ["fc_1.weight", "fc_2.weight", "proj.weight"])
    x = torch.randn(2, 5, H, generator=torch.Generator().manual_seed(3))
    gate = x @ w1.weight.T + (w1.bias if bias else 0)
    up = x @ w3.weight.T + (w3.bias if bias else 0)
    want = (TORCH_FORMULAS[act](gate) * up) @ w2.weight.T + (w2.bias if bias else 0)
    torch.testing.assert_close(ff(x), want, rtol=1e-5, atol=1e-6)


# Llama's published FFN sizes (multiple_of 256): 7B, 13B, 33B, 65B; 768 -> 2048 from formulas.md.
@pytest.mark.parametrize("emb_dim, multiple_of, hidden", [
    (768, 256, 2048), (4096, 256, 11008), (5120, 256, 13824), (6656, 256, 17920),
    (8192, 256, 22016), (16, 256, 256), (16, 8, 48), (16, 1, 42),
])
def test_glu_automatic_hidden_size_is_llamas(make_spec, emb_dim, multiple_of, hidden):
    spec = make_spec(model={"emb_dim": emb_dim, "n_layers": 1},
                     ffn={"name": "glu", "multiple_of": multiple_of}, activation="silu")
    ff = explorer.build_model(spec, device="meta").trf_blocks[0].ff
    assert (ff.fc_1.out_features, ff.fc_2.out_features, ff.proj.in_features) == (hidden,) * 3
    assert count(ff) == 3 * emb_dim * hidden
    if multiple_of == 256 and emb_dim >= 768:  # 3*h*f stays within 2% of a 4h MLP's 8h^2
        assert abs(3 * hidden - 8 * emb_dim) <= 0.02 * 8 * emb_dim


def test_glu_explicit_hidden_is_used_as_is(make_spec):
    spec = make_spec(ffn={"name": "glu", "hidden": 33, "multiple_of": 256})
    assert explorer.build_model(spec).trf_blocks[0].ff.fc_1.out_features == 33


@pytest.mark.parametrize("ffn, f", [({"hidden": 32}, 32), ({"multiple_of": 8}, 48),
                                    ({}, 256)])
@pytest.mark.parametrize("bias", [False, True])
def test_glu_model_parameter_count_closed_form(make_spec, ffn, f, bias):
    spec = make_spec(ffn={"name": "glu", "bias": bias, **ffn}, activation="silu")
    assert count(explorer.build_model(spec)) == total_params(ffn=glu_params(f, bias))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("expansion", [1, 2, 4, 8])
def test_mlp_expansion_count_and_book_layout(make_spec, expansion, bias):
    model = explorer.build_model(make_spec(ffn={"name": "mlp", "expansion": expansion, "bias": bias}))
    f = expansion * H
    assert count(model) == total_params(ffn=mlp_params(f, bias))
    # Against the default (f = 4h, biases): each block changes by (2*h*f + f + h) - (2*h*4h + 4h + h).
    assert count(model) - total_params() == L * (mlp_params(f, bias) - mlp_params(4 * H, True))
    sd = model.state_dict()
    assert sd["trf_blocks.0.ff.layers.0.weight"].shape == (f, H)
    assert sd["trf_blocks.0.ff.layers.2.weight"].shape == (H, f)
    assert ("trf_blocks.0.ff.layers.0.bias" in sd) == bias


@pytest.mark.parametrize("ffn, key, fragment", [
    ({"name": "glu", "hidden": -1}, "hidden", "must be >= 0, got -1"),
    ({"name": "glu", "multiple_of": 0}, "multiple_of", "must be >= 1, got 0"),
    ({"name": "mlp", "expansion": 0}, "expansion", "must be >= 1, got 0"),
])
def test_bad_ffn_sizes_are_refused_when_the_spec_loads(make_spec, ffn, key, fragment):
    # The Params' ranges, not the factory: no model needs to be built to find out.
    with pytest.raises(explorer.SpecError, match=rf"spec\d+\.yaml: components\.ffn\.{key}: "
                                                 rf"{fragment}$"):
        make_spec(ffn=ffn)


# -- every combination, end to end ----------------------------------------------------------------

FFN_CHOICES = {"mlp": ({"name": "mlp"}, mlp_params(4 * H, True)),
               "glu": ({"name": "glu", "hidden": 32}, glu_params(32, False)),
               # router H x 4, four routed experts and one shared, each a glu of 8 (test_moe.py)
               "moe": ({"name": "moe", "n_experts": 4, "top_k": 2, "n_shared": 1, "hidden": 8},
                       4 * H + 5 * glu_params(8, False)),
               # no feed-forward and no norm before it: minus one norm a block
               "none": ({"name": "none"}, None)}


# A mixture of experts is the slow one to train: with every activation under the first norm,
# with the other norms under -m slow.
@pytest.mark.parametrize("norm, act, ffn", [
    pytest.param(norm, act, ffn, marks=pytest.mark.slow) if ffn == "moe" and norm != NORMS[0]
    else (norm, act, ffn) for norm, act, ffn in itertools.product(NORMS, ACTIVATIONS, FFNS)])
def test_every_combination_builds_runs_causally_and_trains_every_parameter(make_spec, norm, act, ffn):
    choice, ffn_params = FFN_CHOICES[ffn]
    model = explorer.build_model(make_spec(norm=norm, activation=act, ffn=choice))
    if ffn_params is None:  # ffn none
        assert count(model) == total_params(norm, 0) - L * NORM_PARAMS[norm]
    else:
        assert count(model) == total_params(norm, ffn_params)
    ids = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(4))
    changed = ids.clone()
    changed[:, -1] = (ids[:, -1] + 1) % V
    logits = model(ids)
    assert torch.isfinite(logits).all()
    with torch.no_grad():
        logits_changed = model(changed)
    torch.testing.assert_close(logits[:, :-1], logits_changed[:, :-1])  # causal
    assert not torch.allclose(logits[:, -1], logits_changed[:, -1])
    F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert unused == []


# -- descriptions -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["norm", "activation", "ffn"])
def test_plugins_command_prints_every_description_and_param_help(capsys, kind):
    with pytest.raises(SystemExit) as info:
        main(["plugins", "--kind", kind])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for name in REGISTRY.names(kind):
        comp = REGISTRY.component(kind, name)
        assert comp.description and "\n" not in comp.description
        assert f"  {name:<16} {comp.description}" in out
        for p in comp.params:
            assert p.help
            choices = f" one of {', '.join(map(str, p.choices))}" if p.choices else ""
            bounds = f" ({p.range_text})" if p.range_text else ""
            assert f"      {p.name}: {p.type_name} = {p.default!r}{choices}{bounds}  {p.help}" in out


@pytest.mark.parametrize("kind, name", [("norm", "layernorm"), ("activation", "gelu_tanh")])
def test_book_impl_is_the_book_in_training_and_the_fused_kernel_in_eval(make_spec, kind, name):
    from torch.nn import functional as F

    dim = 16
    model = explorer.build_model(make_spec(**{kind: {"name": name, "impl": "book"}}))
    module = model.final_norm if kind == "norm" else model.trf_blocks[0].ff.layers[1]
    with torch.no_grad():
        if kind == "norm":
            module.scale.uniform_(0.5, 1.5), module.shift.uniform_(-0.5, 0.5)
    x = torch.randn(3, 5, dim, generator=torch.Generator().manual_seed(0))
    manual = make_spec(**{kind: {"name": name, "impl": "manual"}})
    book = explorer.build_model(manual)
    book_module = book.final_norm if kind == "norm" else book.trf_blocks[0].ff.layers[1]
    book_module.load_state_dict(module.state_dict())
    book_module.eval()
    module.train()
    assert torch.equal(module(x), book_module(x))  # training: the book's ops, bit for bit
    module.eval()
    kernel = (F.layer_norm(x, (dim,), module.scale, module.shift, 1e-5) if kind == "norm"
              else F.gelu(x, approximate="tanh"))
    assert torch.equal(module(x), kernel)  # eval: torch's kernel
    torch.testing.assert_close(module(x), book_module(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind, name", [("norm", "layernorm"), ("activation", "gelu_tanh")])
def test_auto_impl_is_the_fused_kernel_in_training_too_and_the_same_function(make_spec, kind,
                                                                              name):
    from torch.nn import functional as F

    spec = make_spec()
    assert spec.components[kind].params["impl"] == "auto"  # the default
    module = perturbed(make(spec, kind, **({"dim": H} if kind == "norm" else {}))).train()
    book_module = make(make_spec(**{kind: {"name": name, "impl": "manual"}}),
                       kind, **({"dim": H} if kind == "norm" else {}))
    book_module.load_state_dict(module.state_dict())
    x = 3 * torch.randn(3, 5, H, generator=torch.Generator().manual_seed(0))
    x.requires_grad_()
    kernel = (F.layer_norm(x, (H,), module.scale, module.shift, 1e-5) if kind == "norm"
              else F.gelu(x, approximate="tanh"))
    out = module(x)
    assert torch.equal(out, kernel)  # training: torch's kernel
    expected = book_module(x)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    # The same function's gradient too, for the input and every parameter.
    grads = torch.autograd.grad(out.square().sum(), [x, *module.parameters()])
    book_grads = torch.autograd.grad(expected.square().sum(), [x, *book_module.parameters()])
    for ours, theirs in zip(grads, book_grads):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
