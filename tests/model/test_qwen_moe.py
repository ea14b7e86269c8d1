"""Qwen2-MoE and Qwen3-MoE configs -> specs: logits equal transformers' models (weights read
from their save_pretrained folders), the sparse and dense layers where transformers puts them,
the published Qwen3-30B-A3B, the refusals, and the moe component's gated shared expert.

Weights out to transformers and back, and transformers 5's fused experts, are tested with the
rest of the Llama family in test_hf_llama.py; Qwen3-30B-A3B's parameter counts in
test_real_models.py.
"""

import json

import pytest
import torch

import explorer
from explorer.spec.hf_config import convert, spec_from_hf
from tests.helpers.hf_reference import assert_same_logits, randomize, tokens, transformers
from tests.helpers.published_configs import QWEN3_30B_A3B

pytestmark = pytest.mark.usefixtures("one_thread")

# 3 layers, the middle one dense (mlp_only_layers); 4 experts of 24, top 2.
SMALL = dict(vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
             num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24, mlp_only_layers=[1])
CONFIGS = {
    # No renormalisation of the top k; a shared expert of its own size, gated.
    "qwen2_moe": lambda **kw: transformers.Qwen2MoeConfig(
        **{**SMALL, "shared_expert_intermediate_size": 40, "norm_topk_prob": False, **kw}),
    # Renormalised top k; q/k norms and a head size apart from hidden / heads.
    "qwen3_moe": lambda **kw: transformers.Qwen3MoeConfig(
        **{**SMALL, "head_dim": 12, "norm_topk_prob": True, **kw}),
}


def registry():
    return explorer.get_plugin_manager().registry()


def is_sparse(hf_layer):
    return type(hf_layer.mlp).__name__.endswith("SparseMoeBlock")


@pytest.mark.parametrize("model_type", CONFIGS)
def test_configs_and_weights_compute_what_transformers_computes(tmp_path, model_type):
    """save_pretrained's folder (transformers 5's config.json, per-expert tensor names as the
    Hub's files have them): spec-from-hf and the weights give transformers' logits to 1e-4."""
    torch.manual_seed(0)
    hf = randomize(transformers.AutoModelForCausalLM.from_config(
        CONFIGS[model_type](), attn_implementation="eager"))
    hf.save_pretrained(tmp_path)
    ours = explorer.load_model(spec_from_hf(tmp_path), tmp_path).eval()
    assert [type(b.ff).__name__ for b in ours.trf_blocks] == [
        "MixtureOfExperts", "GLU", "MixtureOfExperts"]
    assert [is_sparse(layer) for layer in hf.model.layers] == [True, False, True]
    assert_same_logits(ours, hf, tokens(2, 20))


def test_qwen2_moe_shared_expert_and_biases_as_transformers_has_them(tmp_path):
    spec = spec_from_hf(_saved_config(tmp_path, "qwen2_moe"))
    ffn = spec.components["ffn"].params
    assert (ffn["n_shared"], ffn["shared_hidden"], ffn["shared_gate"], ffn["router"]) == (
        1, 40, True, "softmax_topk")
    assert spec.model.qkv_bias and not spec.components["attention"].params["out_bias"]
    shared = explorer.build_model(spec, device="meta").trf_blocks[0].ff
    assert shared.shared.proj.in_features == 40 and shared.shared_gate.weight.shape == (1, 32)


def _saved_config(tmp_path, model_type, **changes):
    """The config.json transformers 5 saves for CONFIGS[model_type](**changes)."""
    CONFIGS[model_type](**changes).save_pretrained(tmp_path)
    return tmp_path


@pytest.mark.parametrize("model_type", CONFIGS)
@pytest.mark.parametrize("step, only, layers", [
    (2, [], [{"every": 2, "offset": 0}]),  # (i + 1) % 2: layers 1 and 3 sparse
    (1, [0, 3], [{"every": 3, "offset": 0}]),
    (1, [0, 1], [{"first": 2}]),
    (3, [0], [{"layers": [0, 1, 3]}]),  # sparse: layer 2 only
    (1, [], []),  # every layer sparse: no intermediate_size
    (1, [0, 1, 2, 3], None),  # every layer dense: a plain glu model
])
def test_sparse_layers_are_where_transformers_puts_them(tmp_path, model_type, step, only,
                                                        layers):
    """decoder_sparse_step and mlp_only_layers: which layers have experts, as transformers
    builds them (on the meta device), and the same parameter count."""
    config = CONFIGS[model_type](num_hidden_layers=4, decoder_sparse_step=step,
                                 mlp_only_layers=only)
    spec = spec_from_hf(_saved_config(tmp_path, model_type, num_hidden_layers=4,
                                      decoder_sparse_step=step, mlp_only_layers=only))
    doc = spec.to_dict()
    if layers is None:
        assert doc["components"]["ffn"] == {"name": "glu", "hidden": 48, "multiple_of": 256,
                                            "bias": False}
    else:
        assert [{k: v for k, v in rule.items() if k != "components"}
                for rule in doc.get("layers", [])] == layers
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(config)
    ours = explorer.build_model(spec, device="meta")
    assert [type(b.ff).__name__ == "MixtureOfExperts" for b in ours.trf_blocks] == [
        is_sparse(layer) for layer in hf.model.layers]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


def test_qwen3_30b_a3b_becomes():
    """Its config.json by hand: 128 experts of 768, 8 per token renormalised (norm_topk_prob),
    no shared expert, every layer sparse; q/k norms; heads of 128 at width 2048 with 32 heads."""
    doc = convert(QWEN3_30B_A3B, "config.json", registry())[0]
    assert doc["components"]["ffn"] == {"name": "moe", "n_experts": 128, "top_k": 8,
                                        "hidden": 768, "router": "softmax_topk_renorm",
                                        "aux_loss_coef": 0.001, "z_loss_coef": 0.0}
    assert doc["components"]["attention"] == {"name": "gqa", "n_kv_heads": 4, "out_bias": False,
                                              "head_dim": 128, "qk_norm": True}
    assert "layers" not in doc


# -- refusals: one line naming the field --------------------------------------------------------

@pytest.mark.parametrize("model_type, change, message", [
    ("qwen3_moe", {"use_sliding_window": True}, "use_sliding_window: true: explorer does not "
                                                "convert the sliding window of qwen3_moe"),
    ("qwen2_moe", {"layer_types": ["full_attention", "sliding_attention", "full_attention"]},
     "layer_types: names sliding_attention layers but use_sliding_window is false"),
    ("qwen2_moe", {"mlp_only_layers": [3]}, r"mlp_only_layers: expected a list of layer indices "
                                            r"in 0..2, got \[3\]"),
    ("qwen3_moe", {"num_experts": 4, "num_local_experts": 8}, "num_local_experts: 8 but "
                                                              "num_experts is 4"),
    ("qwen2_moe", {"decoder_sparse_step": 0}, "decoder_sparse_step: must be >= 1, got 0"),
    ("qwen2_moe", {"shared_expert_intermediate_size": 0}, "shared_expert_intermediate_size: "
                                                          "must be >= 1, got 0"),
    ("qwen3_moe", {"shared_expert_intermediate_size": 8}, "shared_expert_intermediate_size: the "
                                                          "qwen3_moe converter does not know"),
])
def test_what_the_converters_refuse(tmp_path, model_type, change, message):
    config = {"model_type": model_type, "vocab_size": 256, "hidden_size": 32,
              "num_hidden_layers": 3, "num_attention_heads": 4, **change}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(explorer.SpecError, match=message):
        spec_from_hf(tmp_path)


# -- the moe component's shared expert ------------------------------------------------------------

@pytest.mark.parametrize("moe, key, fragment", [
    ({"shared_hidden": 12}, "shared_hidden", "is 12 but n_shared is 0: there is no shared expert"),
    ({"shared_gate": True}, "shared_gate", "is true but n_shared is 0"),
    ({"n_shared": 1, "shared_hidden": -1}, "shared_hidden", "must be >= 0, got -1"),
])
def test_shared_expert_options_without_shared_experts_are_refused(make_spec, moe, key, fragment):
    with pytest.raises(explorer.SpecError, match=rf"components\.ffn\.{key}: {fragment}"):
        make_spec(ffn={"name": "moe", "n_experts": 4, "hidden": 8, **moe})


def test_gated_shared_expert_by_hand(make_spec):
    """Width 16, 4 experts of 8, top 2, one shared expert of 12 with a gate: router 16*4 = 64,
    an expert 3*16*8 = 384, the shared expert 3*16*12 = 576, the gate 16. It holds
    64 + 4*384 + 576 + 16 = 2192 and a token uses 64 + 2*384 + 576 + 16 = 1424. A zero gate
    halves the shared expert's output: sigmoid(0) = 1/2."""
    moe = {"name": "moe", "n_experts": 4, "top_k": 2, "hidden": 8, "n_shared": 1}
    gated = explorer.build_model(make_spec(ffn={**moe, "shared_hidden": 12, "shared_gate": True},
                                           activation="silu")).trf_blocks[0].ff
    assert sum(p.numel() for p in gated.parameters()) == 2192
    assert gated.active_parameters() == 1424
    plain = explorer.build_model(make_spec(ffn={**moe, "shared_hidden": 12},
                                           activation="silu")).trf_blocks[0].ff
    with torch.no_grad():
        gated.shared_gate.weight.zero_()
        for name, p in plain.named_parameters():
            p.copy_(gated.get_parameter(name))
        x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0))
        want = plain(x) - 0.5 * plain.shared(x)
        torch.testing.assert_close(gated(x), want, atol=1e-6, rtol=0)
