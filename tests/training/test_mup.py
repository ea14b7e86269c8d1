"""μP (explorer.model.parametrization): roles, initialisation, AdamW groups, the output multiplier
and the attention's 1/d scaling, each against a hand computation on a tiny model; the spec's
errors; and that μP at its base width is the standard model."""

import math

import pytest
import torch

import explorer
from explorer.errors import PluginError
from explorer.model.gpt import mup_roles
from explorer.model.parametrization import optimizer_groups
from explorer.training.corpus import tokenize
from explorer.model.tokenizer import get_tokenizer
from explorer.training.loop import train
from explorer.training.settings import TrainConfig
from tests.helpers import run_cli
from tests.helpers.sweep_helpers import CORPUS

pytestmark = pytest.mark.usefixtures("one_thread")

# Width 64 against a base of 16: the width multiplier m is 4, sqrt(m) 2. Four heads: the head
# size grows from 4 (base) to 16.
MUP = {"emb_dim": 64, "n_heads": 4, "qkv_bias": True, "parametrization": "mup",
       "base_width": 16}
STANDARD = {**MUP, "parametrization": "standard"}
BLOCK_MATRICES = ["att.W_query.weight", "att.W_key.weight", "att.W_value.weight",
                  "att.out_proj.weight", "ff.layers.0.weight", "ff.layers.2.weight"]


@pytest.fixture(scope="module")
def corpus():
    return tokenize(CORPUS, "test corpus", get_tokenizer("bytes"), "bytes")


def block_names(suffixes, n_layers=2):
    return {f"trf_blocks.{i}.{s}" for i in range(n_layers) for s in suffixes}


def test_standard_is_the_default(make_spec):
    config = make_spec().model
    assert (config.parametrization, config.base_width, config.width_multiplier) == (
        "standard", 0, 1.0)
    assert make_spec(model=MUP).model.width_multiplier == 4.0


def test_roles_of_the_tiny_model(make_spec):
    spec = make_spec(model=MUP)
    roles = mup_roles(explorer.build_model(spec), spec)
    # By hand: a weight matrix of a block grows in both dimensions (64 x 64, or 256 x 64 for the
    # FFN's 4 x emb_dim); embeddings (256 x 64, 32 x 64), biases and norm gains in one; the
    # untied head (256 x 64) is the output.
    assert {n for n, r in roles.items() if r == "matrix_like"} == block_names(BLOCK_MATRICES)
    assert [n for n, r in roles.items() if r == "output"] == ["out_head.weight"]
    vector = {n for n, r in roles.items() if r == "vector_like"}
    assert {"tok_emb.weight", "pos_emb.weight", "final_norm.scale",
            "final_norm.shift"} | block_names(["att.W_query.bias", "ff.layers.2.bias",
                                                "norm1.scale", "norm2.shift"]) <= vector
    assert len(roles) == len(list(explorer.build_model(spec).parameters()))


def test_a_tied_head_is_the_embedding(make_spec):
    spec = make_spec(model=MUP, weight_tying="tied")
    roles = mup_roles(explorer.build_model(spec), spec)
    assert roles["tok_emb.weight"] == "vector_like" and "output" not in roles.values()


def test_mup_initialisation_by_hand(make_spec):
    """The same draws as the standard model: the head's weights and each matrix's bias times
    sqrt(m) = 2, everything else equal."""
    mup = dict(explorer.build_model(make_spec(model=MUP)).named_parameters())
    standard = dict(explorer.build_model(make_spec(model=STANDARD)).named_parameters())
    doubled = {"out_head.weight"} | block_names(
        [m.replace("weight", "bias") for m in BLOCK_MATRICES])
    for name, p in mup.items():
        factor = 2.0 if name in doubled else 1.0
        torch.testing.assert_close(p, factor * standard[name], rtol=0, atol=0, msg=name)
    # PyTorch's head init is U(-1/sqrt(64), 1/sqrt(64)), std 1/sqrt(3 * 64); μP's twice that.
    assert mup["out_head.weight"].std().item() == pytest.approx(2 / math.sqrt(192), rel=0.02)


def test_adamw_groups_by_hand(make_spec):
    spec = make_spec(model=MUP)
    model = explorer.build_model(spec)
    groups = {g["role"]: g for g in optimizer_groups(model, spec.model, 0.1,
                                                     mup_roles(model, spec))}
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in groups["matrix_like"]["params"]} == block_names(BLOCK_MATRICES)
    assert (groups["matrix_like"]["lr_scale"], groups["matrix_like"]["weight_decay"]) == (
        0.25, pytest.approx(0.4))
    assert (groups["vector_like"]["lr_scale"], groups["vector_like"]["weight_decay"]) == (1.0, 0.1)
    assert [names[id(p)] for p in groups["output"]["params"]] == ["out_head.weight"]
    assert groups["output"]["lr_scale"] == 1.0
    standard = make_spec(model=STANDARD)
    plain = optimizer_groups(explorer.build_model(standard), standard.model, 0.1)
    assert not isinstance(next(iter(plain)), dict)  # the standard model: every tensor, one group


def test_one_training_step_moves_each_role_by_its_learning_rate(make_spec, corpus):
    """Adam's first step moves every coordinate with a non-zero gradient by lr * |g| / (|g| +
    eps) ~ lr: μP's matrices by lr / m = lr / 4, the rest by lr."""
    spec = make_spec(model=MUP)
    model = explorer.build_model(spec)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lr = 1e-2
    config = TrainConfig(steps=1, batch_size=2, seq_len=16, lr=lr, warmup=0,
                         schedule="constant", weight_decay=0.0, grad_clip=0.0, eval_tokens=64)
    train(model, spec, config, corpus=corpus)
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters()}
    for name in ("trf_blocks.0.att.W_query.weight", "trf_blocks.1.ff.layers.2.weight"):
        assert moved[name] == pytest.approx(lr / 4, rel=1e-3), name
    for name in ("out_head.weight", "tok_emb.weight", "trf_blocks.0.att.W_query.bias",
                 "final_norm.scale"):
        assert moved[name] == pytest.approx(lr, rel=1e-3), name


def test_output_multiplier_and_attention_scale_by_hand(make_spec):
    spec = make_spec(model=MUP)
    model = explorer.build_model(spec).eval()
    head_out = {}
    model.out_head.register_forward_hook(lambda m, i, o: head_out.update(o=o))
    attention = model.trf_blocks[0].att
    inputs = {}
    attention.register_forward_hook(lambda m, i, o: inputs.update(x=i[0], out=o))
    ids = torch.tensor([[5, 17, 200, 3, 99, 42]])
    with torch.no_grad():
        logits = model(ids)
        torch.testing.assert_close(logits, head_out["o"] / 4)  # the output multiplier 1 / m
        # Attention by hand: scores q.k scaled by sqrt(base head size) / head size = 2 / 16.
        assert attention.scale == 0.125
        x = inputs["x"]
        b, t, _ = x.shape

        def heads(linear):
            return linear(x).view(b, t, 4, 16).transpose(1, 2)  # (B, nh, T, hs)

        q, k, v = heads(attention.W_query), heads(attention.W_key), heads(attention.W_value)
        scores = (q @ k.transpose(2, 3)) * 2 / 16
        scores = scores.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), -math.inf)
        context = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, t, 64)
        torch.testing.assert_close(inputs["out"], attention.out_proj(context))


def test_mup_at_its_base_width_is_the_standard_model(make_spec, corpus):
    """m = 1: the same weights, logits and training losses as the standard parametrization."""
    at_base = {"emb_dim": 16, "parametrization": "mup", "base_width": 16}
    config = TrainConfig(steps=3, batch_size=2, seq_len=16, lr=1e-2, warmup=0,
                         eval_tokens=64)
    results = []
    for model_keys in (at_base, {"emb_dim": 16}):
        spec = make_spec(model=model_keys)
        model = explorer.build_model(spec)
        results.append(train(model, spec, config, corpus=corpus)["batch_losses"])
    assert results[0] == results[1]


# A third-party FFN whose hidden size is a fixed parameter, and a learned per-channel gate it
# keeps as an (emb_dim, 1) matrix: by shape alone the gate has one growing dimension, by its own
# declaration it is a matrix (to show the declaration wins), and its hidden layer is what the
# twin finds.
GATED_FFN = '''
import torch
from torch import nn

import explorer


class GatedFFN(nn.Module):
    def __init__(self, ctx, hidden):
        super().__init__()
        d = ctx.config.emb_dim
        self.up = nn.Linear(d, hidden)
        self.down = nn.Linear(hidden, d)
        self.gate = nn.Parameter(torch.ones(d, 1))

    def forward(self, x):
        return self.down(torch.relu(self.up(x))) * self.gate[:, 0]

    def explorer_mup_roles(self):
        return {"gate": "matrix_like"}


@explorer.hookimpl
def explorer_components():
    return [explorer.Component("ffn", "gated", GatedFFN, (explorer.Param("hidden", int, 32),),
                               "an FFN of fixed hidden size with a gate")]
'''


def test_a_plugin_component_declares_its_roles(write_spec, tmp_path):
    from tests.helpers import TINY_MODEL

    (tmp_path / "gated_ffn.py").write_text(GATED_FFN)
    spec = explorer.load_spec(write_spec({
        "name": "gated", "tokenizer": "bytes", "plugins": ["gated_ffn.py"],
        "model": {**TINY_MODEL, **MUP}, "components": {"ffn": "gated"}}))
    model = explorer.build_model(spec)
    roles = mup_roles(model, spec)
    # The hidden size (32) is fixed: each projection has one growing dimension, vector-like; the
    # gate is what the component declares.
    assert [roles[f"trf_blocks.0.ff.{n}"] for n in ("up.weight", "down.weight", "gate")] == [
        "vector_like", "vector_like", "matrix_like"]
    groups = {g["role"]: g for g in optimizer_groups(model, spec.model, 0.0, roles)}
    assert any(p is model.trf_blocks[1].ff.gate for p in groups["matrix_like"]["params"])


def test_a_component_declares_its_roles(make_spec):
    spec = make_spec(model=MUP)
    model = explorer.build_model(spec)
    ffn = model.trf_blocks[0].ff
    ffn.explorer_mup_roles = lambda: {"layers.0.weight": "vector_like"}
    roles = mup_roles(model, spec)
    assert roles["trf_blocks.0.ff.layers.0.weight"] == "vector_like"
    assert roles["trf_blocks.1.ff.layers.0.weight"] == "matrix_like"  # not declared there
    ffn.explorer_mup_roles = lambda: {"layers.0.weight": "output"}
    with pytest.raises(PluginError, match=r"declares 'layers.0.weight': 'output'; expected one "
                                          r"of its parameters .* with a role vector_like or "
                                          r"matrix_like"):
        mup_roles(model, spec)


@pytest.mark.parametrize("model_keys, message", [
    ({"parametrization": "mu"}, "model.parametrization: 'mu' is not one of 'standard', 'mup'; "
                                "standard or mup (mup also needs model.base_width)"),
    ({"parametrization": "mup"}, "model.base_width: missing: parametrization mup scales every "
                                 "width from a base width; the emb_dim the hyperparameters were "
                                 "tuned at, e.g. base_width: 64"),
    ({"parametrization": "mup", "base_width": -1}, "model.base_width: must be >= 0, got -1"),
])
def test_bad_parametrization_is_one_line(capsys, write_spec, model_keys, message):
    from tests.helpers import TINY_MODEL

    path = write_spec({"name": "t", "tokenizer": "bytes", "model": {**TINY_MODEL, **model_keys}})
    code, out, err = run_cli(capsys, "build", path, "--only", "params")
    assert code == 2 and out == ""
    assert err == f"Error: {path}: {message}\n"


def test_hugging_face_layouts_refuse_mup_away_from_its_base(make_spec):
    """No Hugging Face layout has the output multiplier or 1/d attention: exporting a μP model
    would silently change its function."""
    from explorer.plugins.checkpoints import hf_deepseek_layout, hf_gpt2, hf_llama_layout

    spec = make_spec(model=MUP)
    assert hf_gpt2.unsupported(spec)[0] == "model.parametrization"
    assert hf_llama_layout.unsupported(spec)[0] == "model.parametrization"
    with pytest.raises(hf_llama_layout._Unsupported, match="mup away from its base width"):
        hf_deepseek_layout.choose(spec)
    assert hf_gpt2.unsupported(make_spec(model={**MUP, "emb_dim": 16})) is None  # m = 1


def test_a_standard_spec_document_is_what_it_was(make_spec):
    """The μP keys appear in a spec's document (reports, checkpoints, a sweep's run keys) only
    under μP: a standard spec hashes to the run key it had before they existed."""
    assert list(make_spec().to_dict()["model"]) == [
        "vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "qkv_bias", "dropout",
        "scale_embeddings", "logit_softcap"]
    model = make_spec(model=MUP).to_dict()["model"]
    assert (model["parametrization"], model["base_width"]) == ("mup", 16)


def test_a_mup_checkpoint_names_the_parametrization_it_needs(make_spec, tmp_path):
    """μP's weights mean something else under the standard parametrization (the output
    multiplier, 1/d attention): loading them into a standard spec is refused by name, and into
    the μP spec they were saved with gives the same logits."""
    from explorer import ExplorerError
    from explorer.weights import save_checkpoint

    spec = make_spec(model=MUP)
    model = explorer.build_model(spec)
    path = save_checkpoint(model, spec, tmp_path / "mup.safetensors")
    with pytest.raises(ExplorerError, match=r"saved with model\.parametrization: mup but the "
                                            r"spec has standard"):
        explorer.load_model(make_spec(model=STANDARD), path)
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        torch.testing.assert_close(explorer.load_model(spec, path)(ids), model(ids))
