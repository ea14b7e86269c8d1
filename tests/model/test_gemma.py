"""Gemma-style switches against Hugging Face's Gemma 2: attention and final-logit soft-capping,
query_pre_attn_scalar, embeddings scaled by sqrt(emb_dim), RMSNorm's (1 + weight), the sandwich
residual and GeGLU; each switch also by hand, its validation, and old checkpoints."""

import json
import math
import subprocess
import sys

import pytest
import torch

import explorer
from tests.helpers.hf_reference import (assert_same_logits, build_spec, load_exactly, randomize, tokens,
                          transformers)

pytestmark = pytest.mark.usefixtures("one_thread")

ATTN_CAP, LOGIT_CAP, QUERY_SCALAR = 5.0, 3.0, 6  # small enough that both caps bite


def gemma2_reference():
    """Every layer global (layer_types), so the sliding window, a per-layer layout, plays no part."""
    config = transformers.Gemma2Config(
        vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_theta=10000.0, query_pre_attn_scalar=QUERY_SCALAR,
        attn_logit_softcapping=ATTN_CAP, final_logit_softcapping=LOGIT_CAP,
        layer_types=["full_attention"] * 2, hidden_activation="gelu_pytorch_tanh",
        tie_word_embeddings=True, attn_implementation="eager")
    torch.manual_seed(0)
    return randomize(transformers.Gemma2ForCausalLM(config))


def gemma2_spec(write_spec, **attention):
    components = {
        "norm": {"name": "rmsnorm", "eps": 1e-6, "unit_offset": True}, "activation": "gelu_tanh",
        "ffn": {"name": "glu", "hidden": 48},
        "attention": {"name": "gqa", "n_kv_heads": 2, "out_bias": False, "softcap": ATTN_CAP,
                      "query_pre_attn_scalar": QUERY_SCALAR, **attention},
        "positional": {"name": "rope", "theta": 10000.0}, "residual": "sandwich",
        "weight_tying": "tied"}
    return build_spec(write_spec, components, scale_embeddings=True, logit_softcap=LOGIT_CAP)


def from_gemma2(hf):
    """Gemma 2's weights under explorer's names: its four norms per layer are the sandwich's."""
    sd = hf.state_dict()
    out = {"tok_emb.weight": sd["model.embed_tokens.weight"],  # the head is tied to it
           "final_norm.weight": sd["model.norm.weight"]}
    for i in range(hf.config.num_hidden_layers):
        src, dst = f"model.layers.{i}.", f"trf_blocks.{i}."
        for theirs, ours in [
                ("self_attn.q_proj", "att.W_query"), ("self_attn.k_proj", "att.W_key"),
                ("self_attn.v_proj", "att.W_value"), ("self_attn.o_proj", "att.out_proj"),
                ("mlp.gate_proj", "ff.fc_1"), ("mlp.up_proj", "ff.fc_2"),
                ("mlp.down_proj", "ff.proj"), ("input_layernorm", "norm1"),
                ("post_attention_layernorm", "post_norm1"),
                ("pre_feedforward_layernorm", "norm2"),
                ("post_feedforward_layernorm", "post_norm2")]:
            out[f"{dst}{ours}.weight"] = sd[f"{src}{theirs}.weight"]
    return out


@pytest.mark.parametrize("impl", ["auto", "manual"])
def test_logits_equal_gemma2(write_spec, impl):
    hf = gemma2_reference()
    ours = load_exactly(explorer.build_model(gemma2_spec(write_spec, impl=impl)), from_gemma2(hf))
    ids = tokens(2, 20)
    assert_same_logits(ours, hf, ids)
    with torch.no_grad():
        logits = ours(ids)
    assert logits.abs().max() < LOGIT_CAP and logits.abs().max() > 0.9 * LOGIT_CAP  # it bites


def test_gemma2_needs_each_switch(write_spec):
    """Turning any one switch off moves the logits: each is doing part of the match."""
    hf = gemma2_reference()
    ids = tokens(2, 20)
    with torch.no_grad():
        want = hf(ids).logits
    for overrides in (["components.attention.softcap=0"],
                      ["components.attention.query_pre_attn_scalar=0"],
                      ["model.scale_embeddings=false"], ["model.logit_softcap=0"]):
        spec = explorer.load_spec(gemma2_spec(write_spec).source, overrides=overrides)
        ours = load_exactly(explorer.build_model(spec), from_gemma2(hf))
        with torch.no_grad():
            assert not torch.allclose(ours(ids), want, atol=1e-3), overrides


# -- each switch by hand -----------------------------------------------------------------------

def test_final_logit_softcap_is_c_tanh_of_the_logits(make_spec):
    plain = explorer.build_model(make_spec(model={"vocab_size": 256})).eval()
    capped = explorer.build_model(make_spec(model={"vocab_size": 256, "logit_softcap": 0.5}))
    capped.load_state_dict(plain.state_dict())
    ids = tokens(1, 6)
    with torch.no_grad():
        torch.testing.assert_close(capped.eval()(ids), 0.5 * torch.tanh(plain(ids) / 0.5))


def test_scale_embeddings_multiplies_by_sqrt_emb_dim(make_spec):
    """emb_dim 16: the blocks see 4 * the token embedding (no positions with rope)."""
    model = explorer.build_model(make_spec(model={"vocab_size": 256, "scale_embeddings": True},
                                           positional="rope"))
    seen = []
    model.trf_blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    ids = tokens(1, 5)
    with torch.no_grad():
        model(ids)
        assert torch.equal(seen[0], 4.0 * model.tok_emb(ids))
        model.to(torch.bfloat16)(ids)  # sqrt(16) = 4 in bfloat16 too
        assert torch.equal(seen[1], 4.0 * model.tok_emb(ids))


def test_rmsnorm_unit_offset_scales_by_one_plus_weight(make_spec):
    spec = make_spec(norm={"name": "rmsnorm", "unit_offset": True})
    norm = explorer.build_model(spec).final_norm
    assert torch.equal(norm.weight, torch.zeros(16))  # Gemma initialises to zeros: scale 1
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(-0.5, 0.5, 16))
    reference = torch.nn.RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        reference.weight.copy_(1 + norm.weight)
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(norm(x), reference(x), atol=1e-6, rtol=0)
    # By hand: [3, 4] has mean square 12.5; weight 0 scales by 1.
    two = explorer.BuildContext(spec, spec.plugin_manager.registry()).make("norm", dim=2)
    want = torch.tensor([3.0, 4.0]) / math.sqrt(12.5 + 1e-6)
    torch.testing.assert_close(two(torch.tensor([3.0, 4.0])), want, atol=1e-7, rtol=0)


@pytest.mark.parametrize("name", ["mha", "gqa"])
def test_attention_softcap_takes_the_manual_path_and_caps(make_spec, name):
    capped = explorer.build_model(make_spec(attention={"name": name, "softcap": 1e6})).eval()
    plain = explorer.build_model(make_spec(attention={"name": name, "impl": "manual"})).eval()
    assert not capped.trf_blocks[0].att.fused()  # auto: sdpa cannot cap
    ids = tokens(1, 8, vocab=97)
    with torch.no_grad():  # a cap far above every score changes nothing
        torch.testing.assert_close(capped(ids), plain(ids), atol=1e-6, rtol=0)


def test_softcap_bounds_every_score_by_hand(make_spec):
    """Scores of 10 and 0 capped at 1: softmax over [tanh(10), tanh(0)] = [0.7616, 0]."""
    from explorer.plugins.attention.mha import attend

    q = torch.tensor([[[[10.0]]]]).expand(1, 1, 2, 1)  # (B, nh, T, hs), hs 1: scale 1
    k = torch.tensor([[[[1.0], [0.0]]]])
    v = torch.tensor([[[[1.0], [0.0]]]])
    positions = torch.arange(2)
    out = attend(q, k, v, positions, positions, None, 0, torch.nn.Dropout(0.0), False,
                 softcap=1.0)
    weight = math.exp(math.tanh(10.0)) / (math.exp(math.tanh(10.0)) + 1)
    torch.testing.assert_close(out.flatten(), torch.tensor([1.0, weight]))


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_query_pre_attn_scalar_equal_to_the_head_size_changes_nothing(make_spec, impl):
    base = explorer.build_model(make_spec(attention={"name": "mha", "impl": impl})).eval()
    same = explorer.build_model(make_spec(attention={"name": "mha", "impl": impl,
                                                     "query_pre_attn_scalar": 4})).eval()
    other = explorer.build_model(make_spec(attention={"name": "mha", "impl": "manual",
                                                      "query_pre_attn_scalar": 9})).eval()
    sdpa = explorer.build_model(make_spec(attention={"name": "mha", "impl": "sdpa",
                                                     "query_pre_attn_scalar": 9})).eval()
    ids = tokens(1, 8, vocab=97)
    with torch.no_grad():
        torch.testing.assert_close(same(ids), base(ids), atol=1e-6, rtol=0)
        torch.testing.assert_close(sdpa(ids), other(ids), atol=1e-5, rtol=0)
        assert not torch.allclose(other(ids), base(ids), atol=1e-3)


# -- validation and what already exists -------------------------------------------------------------

@pytest.mark.parametrize("model, fragment", [
    ({"logit_softcap": -1}, "model.logit_softcap: must be >= 0, got -1.0; 0 for no"),
    ({"logit_softcap": "big"}, "model.logit_softcap: expected a number, got 'big'; 0 for no"),
    ({"logit_softcap": float("inf")}, "model.logit_softcap: expected a finite number, got inf"),
    ({"scale_embeddings": "yes"}, "model.scale_embeddings: expected true or false, got 'yes'"),
])
def test_bad_model_switches_are_refused_when_the_spec_loads(make_spec, model, fragment):
    with pytest.raises(explorer.SpecError, match=r"spec\d+\.yaml: " + fragment):
        make_spec(model=model)


@pytest.mark.parametrize("attention, fragment", [
    ({"name": "gqa", "softcap": -1.0}, r"softcap: must be >= 0, got -1\.0"),
    ({"name": "mha", "softcap": 50.0, "impl": "sdpa"}, r"impl: sdpa cannot soft-cap the scores"),
    ({"name": "mha", "query_pre_attn_scalar": -4}, "query_pre_attn_scalar: must be >= 0, got -4"),
])
def test_bad_attention_switches_are_spec_errors(make_spec, attention, fragment):
    with pytest.raises(explorer.SpecError, match=r"components\.attention\." + fragment):
        explorer.build_model(make_spec(attention=attention))


def test_cli_refuses_a_negative_logit_softcap_in_one_line(write_spec):
    path = write_spec({"model": {"vocab_size": 97, "context_length": 8, "emb_dim": 8,
                                 "n_heads": 2, "n_layers": 1, "logit_softcap": -3}})
    proc = subprocess.run([sys.executable, "-m", "explorer", "build", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"Error: {path}: model.logit_softcap: must be >= 0, got -3.0; 0 for "
                           "no final-logit soft-capping, e.g. 30.0 (Gemma 2)\n")


def test_gpt2_export_refuses_the_model_switches(make_spec):
    from explorer.plugins.checkpoints.hf_gpt2 import unsupported as gpt2_incompatibility

    assert gpt2_incompatibility(make_spec()) is None
    assert gpt2_incompatibility(make_spec(model={"logit_softcap": 30.0})) == (
        "model.logit_softcap", "is 30.0; GPT-2 has none (0.0)")
    assert gpt2_incompatibility(make_spec(model={"scale_embeddings": True}))[0] == (
        "model.scale_embeddings")
    assert gpt2_incompatibility(make_spec(norm={"name": "layernorm"}, attention={
        "name": "mha", "softcap": 50.0})) == ("components.attention.softcap",
                                              "is 50.0; GPT-2 has only 0.0")


def test_a_checkpoint_saved_before_the_new_keys_still_loads(make_spec, tmp_path):
    """Checkpoints carry their spec; one written before softcap, unit_offset and the model
    switches existed lacks those keys, which then had their defaults."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from explorer.weights import SPEC_METADATA_KEY, save_checkpoint

    spec = make_spec(norm="rmsnorm", attention={"name": "gqa", "n_kv_heads": 2})
    model = explorer.build_model(spec)
    path = save_checkpoint(model, spec, tmp_path / "new.safetensors")
    with safe_open(path, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata()
    old = json.loads(metadata[SPEC_METADATA_KEY])
    for key in ("scale_embeddings", "logit_softcap"):
        del old["model"][key]
    del old["components"]["norm"]["unit_offset"]
    for key in ("softcap", "query_pre_attn_scalar"):
        del old["components"]["attention"][key]
    old_path = tmp_path / "old.safetensors"
    save_file(tensors, old_path, metadata={**metadata, SPEC_METADATA_KEY: json.dumps(old)})
    loaded = explorer.load_model(spec, str(old_path))
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters()))
    changed = make_spec(norm={"name": "rmsnorm", "unit_offset": True},
                        attention={"name": "gqa", "n_kv_heads": 2})
    with pytest.raises(explorer.ExplorerError, match="saved with components.norm.unit_offset: "
                                                     "false but the spec has true"):
        explorer.load_model(changed, str(old_path))
