"""Hugging Face Qwen3-Next in: save_pretrained folders of tiny random Qwen3NextForCausalLM
models (transformers' torch paths: no fla or causal-conv1d kernels are installed) convert with
spec-from-hf and load through the hf-qwen3-next format with transformers' logits to 1e-4; the
converted models decode through their recurrent states and KV caches as they compute in one
forward; what the converter cannot express is refused."""

import importlib.util
import json

import pytest
import torch

import explorer
from explorer.spec.hf_config import spec_from_hf
from tests.helpers.hf_reference import assert_same_logits, randomize, tokens, transformers

pytestmark = pytest.mark.usefixtures("one_thread")

# 4 layers, width 32; gated attention of 4 heads of 8 (2 KV heads, a quarter rotated); the
# DeltaNet of 4 value heads of 5 sharing 2 key heads of 6; 4 experts of 8 (top 2) and a shared
# expert of 12, a dense glu of 48 where mlp_only_layers says.
SMALL = dict(vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
             num_attention_heads=4, num_key_value_heads=2, head_dim=8,
             max_position_embeddings=64, linear_num_value_heads=4, linear_num_key_heads=2,
             linear_key_head_dim=6, linear_value_head_dim=5, num_experts=4, num_experts_per_tok=2,
             moe_intermediate_size=8, shared_expert_intermediate_size=12,
             attn_implementation="eager")
CONFIGS = {
    # full_attention_interval's default: layer 3 softmax, 0-2 DeltaNet; layer 0 dense.
    "interval": dict(mlp_only_layers=[0]),
    # Explicit layer types, softmax in the majority; every layer sparse; half the head rotated.
    "layer-types": dict(layer_types=["full_attention", "linear_attention", "full_attention",
                                     "full_attention"], partial_rotary_factor=0.5),
}


def saved(folder, name):
    torch.manual_seed(0)
    hf = randomize(transformers.AutoModelForCausalLM.from_config(
        transformers.Qwen3NextConfig(**SMALL, **CONFIGS[name])))
    hf.save_pretrained(folder)
    return hf


def test_transformers_runs_its_torch_paths():
    """The kernels transformers would prefer are absent, so its reference is the torch code."""
    for kernel in ("fla", "causal_conv1d"):
        assert importlib.util.find_spec(kernel) is None


@pytest.mark.parametrize("name", CONFIGS)
def test_save_pretrained_folders_load_with_transformers_logits(tmp_path, name):
    hf = saved(tmp_path, name)
    spec = spec_from_hf(tmp_path)
    ours = explorer.load_model(spec, tmp_path).eval()
    mixers = [type(b.att).__name__ for b in ours.trf_blocks]
    if name == "interval":
        assert mixers == ["GatedDeltaNet"] * 3 + ["GroupedQueryAttention"]
        assert [type(b.ff).__name__ for b in ours.trf_blocks] == ["GLU"] + ["MixtureOfExperts"] * 3
    else:
        assert mixers == ["GroupedQueryAttention", "GatedDeltaNet"] + ["GroupedQueryAttention"] * 2
    assert_same_logits(ours, hf, tokens(2, 20))


def test_the_converted_model_decodes_as_it_computes(tmp_path):
    """Prompt then tokens through a ModelCache (RecurrentState for the DeltaNet layers, KVCache
    for the softmax one) gives one forward's logits; greedy generation the same tokens with and
    without it."""
    from explorer.model.kv_cache import KVCache, ModelCache, RecurrentState

    saved(tmp_path, "interval")
    ours = explorer.load_model(spec_from_hf(tmp_path), tmp_path).eval()
    ids = tokens(2, 20)
    cache = ModelCache.for_model(ours, 20)
    assert [type(layer) for layer in cache.layers] == [RecurrentState] * 3 + [KVCache]
    with torch.no_grad():
        full = ours(ids)
        steps = [ours(ids[:, :8], cache=cache)] + [ours(ids[:, i:i + 1], cache=cache)
                                                  for i in range(8, 20)]
    # Logits of spread ~3 (randomize's weights): the chunked and stepped sums differ in rounding.
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)
    prompt = tokens(2, 4, seed=1)
    assert torch.equal(explorer.generate(ours, prompt, 12, use_cache=True),
                       explorer.generate(ours, prompt, 12, use_cache=False))


def test_the_converter_writes_the_mixer_and_the_gated_attention(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {**transformers.Qwen3NextConfig(**SMALL, mlp_only_layers=[0]).to_dict()}))
    doc = spec_from_hf(tmp_path).to_dict()
    attention = doc["components"]["attention"]
    assert {k: attention[k] for k in ("name", "n_heads", "n_key_heads", "key_head_dim",
                                      "value_head_dim", "conv_kernel")} == {
        "name": "gated_deltanet", "n_heads": 4, "n_key_heads": 2, "key_head_dim": 6,
        "value_head_dim": 5, "conv_kernel": 4}
    softmax = doc["layers"][0]
    assert softmax["last"] == 1  # layer 3 of 4
    assert {k: softmax["components"]["attention"][k] for k in ("name", "output_gate", "qk_norm",
                                                                "head_dim")} == {
        "name": "gqa", "output_gate": True, "qk_norm": True, "head_dim": 8}
    assert doc["components"]["positional"]["fraction"] == 0.25  # transformers' default
    assert doc["components"]["norm"]["unit_offset"] is True


def test_bad_layer_types_are_one_line(tmp_path, capsys):
    from tests.helpers import run_cli

    config = transformers.Qwen3NextConfig(**SMALL).to_dict()
    config["layer_types"] = ["linear_attention", "sliding_attention", "full_attention",
                             "full_attention"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    code, out, err = run_cli(capsys, "spec-from-hf", tmp_path / "config.json")
    assert code == 2
    assert err.startswith(f"Error: {tmp_path / 'config.json'}: layer_types: expected 4 entries, "
                          "each one of linear_attention, full_attention")
