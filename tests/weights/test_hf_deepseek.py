"""Hugging Face DeepSeek-V2 and V3 weights in and out: save_pretrained folders load through
explorer's weights loading with transformers' logits (a dense first layer then routed + shared
experts, q_lora_rank set and unset, V2's group-limited routing, YaRN's score scale, V3's
score-correction bias, with and without rope_interleave), explorer's exports load in
transformers with the same logits and tensors, and what the layout cannot hold is refused."""

import json

import pytest
import torch
from safetensors.torch import save_file

import explorer
from explorer.spec.hf_config import spec_from_hf
from explorer.weights import export_format, export_hf
from tests.helpers.hf_reference import (DEEPSEEK_MLA as MLA, assert_same_logits, build_spec,
                                        deepseek_components, randomize, tokens, transformers)

pytestmark = pytest.mark.usefixtures("one_thread")

# 3 layers: the first dense (first_k_dense_replace), then 8 experts of 8, top 3, one shared.
SMALL = dict(vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
             num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
             rms_norm_eps=1e-6,
             first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=3,
             n_shared_experts=1, moe_intermediate_size=8, routed_scaling_factor=2.5,
             attn_implementation="eager", **MLA)
YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
        "original_max_position_embeddings": 16, "mscale": 0.707, "mscale_all_dim": 0.707}
CONFIGS = {
    "v2": lambda: transformers.DeepseekV2Config(**SMALL, q_lora_rank=10),
    "v2-without-q-lora": lambda: transformers.DeepseekV2Config(**SMALL, q_lora_rank=None),
    "v2-groups": lambda: transformers.DeepseekV2Config(
        **SMALL, q_lora_rank=None, topk_method="group_limited_greedy", n_group=4, topk_group=2),
    "v2-yarn": lambda: transformers.DeepseekV2Config(**SMALL, q_lora_rank=10,
                                                     rope_parameters=YARN),
    "v3": lambda: transformers.DeepseekV3Config(**SMALL, q_lora_rank=10, n_group=4,
                                                topk_group=2),
    "v3-without-q-lora": lambda: transformers.DeepseekV3Config(**SMALL, q_lora_rank=None,
                                                               n_group=4, topk_group=2),
    "v3-rope-halves": lambda: transformers.DeepseekV3Config(
        **SMALL, q_lora_rank=10, n_group=4, topk_group=2, rope_interleave=False),
}


def saved(folder, config):
    """A random transformers model (V3's score-correction biases too) saved with
    save_pretrained (safetensors) into ``folder``."""
    torch.manual_seed(0)
    hf = randomize(transformers.AutoModelForCausalLM.from_config(config))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, buffer in hf.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buffer.copy_(torch.randn(buffer.shape, generator=gen))
    hf.save_pretrained(folder)
    return hf


@pytest.mark.parametrize("name", CONFIGS)
def test_save_pretrained_folders_load_with_transformers_logits(tmp_path, name):
    hf = saved(tmp_path, CONFIGS[name]())
    ours = explorer.load_model(spec_from_hf(tmp_path), tmp_path).eval()
    assert [type(b.ff).__name__ for b in ours.trf_blocks] == ["GLU", "MixtureOfExperts",
                                                             "MixtureOfExperts"]
    assert_same_logits(ours, hf, tokens(2, 20))


def test_the_rope_rows_are_what_makes_them_agree(tmp_path):
    """Read as V3 with rope_interleave: false (no reordering), interleaved weights differ."""
    hf = saved(tmp_path, CONFIGS["v3"]())
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "rope_interleave": False}))
    ours = explorer.load_model(spec_from_hf(tmp_path), tmp_path).eval()
    ids = tokens(2, 20)
    with torch.no_grad():
        assert not torch.allclose(ours(ids), hf(ids).logits, atol=1e-2)


@pytest.mark.parametrize("name", ["v2", "v2-without-q-lora", "v2-groups", "v2-yarn", "v3"])
def test_exports_load_in_transformers_with_the_same_tensors(tmp_path, name):
    """transformers -> explorer -> export -> transformers: the type, every tensor (the rope rows
    back in interleaved pairs) and the logits."""
    hf = saved(tmp_path / "in", CONFIGS[name]())
    spec = spec_from_hf(tmp_path / "in")
    ours = explorer.load_model(spec, tmp_path / "in").eval()
    export_hf(ours, spec, tmp_path / "out")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out",
                                                             attn_implementation="eager")
    assert type(back) is type(hf)
    want, got = hf.state_dict(), back.state_dict()
    assert set(got) == set(want)
    for key, tensor in want.items():
        torch.testing.assert_close(got[key], tensor, atol=0, rtol=0, msg=key)
    assert_same_logits(ours, back.eval(), tokens(2, 20))


def test_a_dense_latent_attention_spec_exports_as_deepseek_v2(write_spec, tmp_path):
    """Every layer dense: first_k_dense_replace is the depth, the experts' fields unread."""
    spec = build_spec(write_spec, deepseek_components(None, moe=False))
    model = explorer.build_model(spec)
    randomize(model)
    export_hf(model, spec, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["model_type"], config["first_k_dense_replace"], config["q_lora_rank"]) == (
        "deepseek_v2", 2, None)
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager")
    assert_same_logits(model, back.eval(), tokens(2, 20))
    again = explorer.load_model(spec, tmp_path).eval()
    assert_same_logits(again, back, tokens(2, 20))


@pytest.mark.parametrize("change, reason", [
    ({"window": 4}, "components.attention.window is 4; DeepSeek has only 0"),
    ({"score_scale": 2.0}, "components.attention.score_scale is 2.0; DeepSeek scales the scores "
                           "only through yarn's mscale_all_dim"),
    ({"out_bias": True}, "components.attention.out_bias is true with model.qkv_bias false"),
])
def test_export_refuses_what_deepseek_cannot_hold(write_spec, change, reason):
    spec = build_spec(write_spec, deepseek_components(None, moe=True, **change))
    with pytest.raises(explorer.ExplorerError, match=f"Hugging Face DeepSeek: {reason}"):
        export_format(spec, "hf")


def test_export_refuses_a_router_deepseek_does_not_compute(write_spec):
    components = deepseek_components(None, moe=True)
    components["ffn"]["router"] = "softmax_topk_renorm"
    spec = build_spec(write_spec, components)
    with pytest.raises(explorer.ExplorerError, match="Hugging Face DeepSeek: components.ffn.router "
                                                     "is softmax_topk_renorm; DeepSeek routes with "
                                                     r"softmax_topk \(V2\) or sigmoid_topk"):
        export_format(spec, "hf")


def test_config_json_disagreeing_with_the_spec_is_named(tmp_path):
    """What the shapes cannot show (routed_scaling_factor) is checked against config.json."""
    saved(tmp_path, CONFIGS["v2"]())
    spec = spec_from_hf(tmp_path, overrides=["components.ffn.routed_scaling=1.0"])
    with pytest.raises(explorer.ExplorerError, match=r"config.json has components.ffn."
                                                     r"routed_scaling at layer 1: 2.5; the spec "
                                                     "has 1.0 there"):
        explorer.load_model(spec, tmp_path)


def test_fp8_weights_are_refused_with_what_to_do(tmp_path):
    saved(tmp_path, CONFIGS["v3"]())
    save_file({"model.layers.0.self_attn.o_proj.weight_scale_inv": torch.ones(1, 1)},
              tmp_path / "model.safetensors")
    with pytest.raises(explorer.ExplorerError, match=r"o_proj.weight_scale_inv: the weights are "
                                                     "fp8 blocks"):
        explorer.load_model(spec_from_hf(tmp_path), tmp_path)
