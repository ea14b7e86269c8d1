"""Hugging Face Mamba-2 and Nemotron-H: save_pretrained folders convert (spec_from_hf) and load
(the hf-mamba format) with transformers' logits. transformers runs its torch code: neither
mamba-ssm nor causal-conv1d is installed, so it falls back to its reference scan and
convolution (it logs so)."""

import importlib.util
import json

import pytest
import torch

import explorer
from explorer.spec.hf_config import spec_from_hf
from tests.helpers.hf_reference import randomize, tokens, transformers

pytestmark = pytest.mark.usefixtures("one_thread")

# 8 heads of 8 (inner 64 = 2 x 32) in 2 groups, a state of 6, chunks of 8: 20 tokens span 3.
MAMBA = dict(vocab_size=256, hidden_size=32, num_heads=8, head_dim=8, state_size=6, n_groups=2,
             num_hidden_layers=2, chunk_size=8)
MAMBA2 = {
    "plain": lambda: transformers.Mamba2Config(**MAMBA),
    "tied": lambda: transformers.Mamba2Config(**MAMBA, tie_word_embeddings=True),
    "biases": lambda: transformers.Mamba2Config(**MAMBA, use_bias=True, use_conv_bias=False),
    "dt-limit": lambda: transformers.Mamba2Config(**MAMBA, time_step_limit=(0.05, 0.5)),
}
# Every Nemotron-H layer type but moe, attention between Mamba layers.
NEMOTRON = dict(vocab_size=256, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                head_dim=8, intermediate_size=48, mamba_num_heads=8, mamba_head_dim=8,
                ssm_state_size=6, n_groups=2, chunk_size=8, max_position_embeddings=64,
                layers_block_type=["linear_attention", "mlp", "full_attention", "mlp",
                                   "linear_attention"])


def saved(folder, config):
    """A random transformers model saved with save_pretrained; its decays and steps spread
    (A_log, dt_bias) so that the state carries far."""
    torch.manual_seed(0)
    hf = randomize(transformers.AutoModelForCausalLM.from_config(
        config, attn_implementation="eager"))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.rand(p.shape, generator=gen).log())
            elif name.endswith("dt_bias"):
                p.copy_(torch.randn(p.shape, generator=gen))
    hf.save_pretrained(folder)
    return hf


def same_logits(ours, hf, ids):
    with torch.no_grad():
        want, got = hf(ids).logits, ours(ids)
    assert want.std() > 0.5
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_transformers_runs_its_torch_code_here():
    assert importlib.util.find_spec("mamba_ssm") is None
    assert importlib.util.find_spec("causal_conv1d") is None


@pytest.mark.parametrize("name", MAMBA2)
def test_mamba2_folders_load_with_transformers_logits(tmp_path, name):
    hf = saved(tmp_path, MAMBA2[name]())
    spec = spec_from_hf(tmp_path)
    assert (spec.components["attention"].name, spec.components["ffn"].name) == ("mamba2", "none")
    ours = explorer.load_model(spec, tmp_path).eval()
    assert (ours.out_head.weight is ours.tok_emb.weight) == (name == "tied")
    same_logits(ours, hf, tokens(2, 20))


def test_nemotron_h_folders_load_with_transformers_logits(tmp_path):
    hf = saved(tmp_path, transformers.NemotronHConfig(**NEMOTRON))
    spec = spec_from_hf(tmp_path)
    ours = explorer.load_model(spec, tmp_path).eval()
    kinds = [(type(b.att).__name__, type(b.ff).__name__) for b in ours.trf_blocks]
    assert kinds == [("Mamba2Mixer", "NoFeedForward"), ("NoMixer", "MLP"),
                     ("GroupedQueryAttention", "NoFeedForward"), ("NoMixer", "MLP"),
                     ("Mamba2Mixer", "NoFeedForward")]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())
    same_logits(ours, hf, tokens(2, 20))
    # The hybrid generates through KV caches and recurrent states alike.
    prompt = tokens(1, 6, seed=3)
    assert torch.equal(explorer.generate(ours, prompt, 10),
                       explorer.generate(ours, prompt, 10, use_cache=False))


def test_the_hybrid_override_pattern_names_the_same_layers(tmp_path):
    """The older one-letter pattern (M = mamba, * = attention, - = mlp) converts to the spec
    layers_block_type gives."""
    saved(tmp_path, transformers.NemotronHConfig(**NEMOTRON))
    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("layers_block_type")
    (tmp_path / "config.json").write_text(json.dumps({**config,
                                                      "hybrid_override_pattern": "M-*-M"}))
    by_pattern = spec_from_hf(tmp_path)
    assert by_pattern.to_dict()["layers"] == [
        {"layers": [2], "components": {"attention": by_pattern.to_dict()["layers"][0][
            "components"]["attention"]}},
        {"every": 2, "offset": 1, "components": {"attention": {"name": "none"}, "ffn": {
            "name": "mlp", "expansion": 4, "bias": False, "hidden": 48}}}]
    assert by_pattern.to_dict()["layers"][0]["components"]["attention"]["name"] == "gqa"


@pytest.mark.parametrize("change, message", [
    ({"layers_block_type": ["linear_attention", "moe"]},
     "layers_block_type: has moe at layer 1: explorer converts Nemotron-H's Mamba, attention "
     "and MLP layers"),
    ({"mamba_hidden_act": "gelu"}, "mamba_hidden_act: 'gelu': explorer's mamba2 convolves with "
                                   "silu"),
    ({"sliding_window": 16}, "sliding_window: set: transformers' Nemotron-H attends to the "
                             "whole context"),
])
def test_what_explorer_cannot_compute_is_refused_in_one_line(tmp_path, change, message):
    config = transformers.NemotronHConfig(**NEMOTRON).to_dict()
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(explorer.SpecError) as error:
        spec_from_hf(tmp_path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_mamba2_heads_must_fill_the_inner_width(tmp_path):
    config = transformers.Mamba2Config(**MAMBA).to_dict()
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_heads": 4}))
    with pytest.raises(explorer.SpecError, match="num_heads: 4 heads of 8 are not expand \\* "
                                                 "hidden_size = 64"):
        spec_from_hf(tmp_path)


def test_config_json_is_checked_against_the_spec(tmp_path):
    """A spec that differs from config.json where the weights' shapes do not show it (the
    step's upper limit) is refused naming the key; the chunk size, which changes only how the
    same function is computed, loads."""
    from explorer.spec.loading import spec_from_dict

    saved(tmp_path, MAMBA2["plain"]())
    doc = spec_from_hf(tmp_path).to_dict()
    doc["components"]["attention"]["chunk_size"] = 3
    explorer.load_model(spec_from_dict(doc, source="spec.yaml"), tmp_path)
    doc["components"]["attention"]["dt_limit_max"] = 0.5
    with pytest.raises(explorer.ExplorerError, match="config.json has components.attention."
                                                     "dt_limit_max: 0.0 but the spec has "
                                                     "components.attention.dt_limit_max: 0.5"):
        explorer.load_model(spec_from_dict(doc, source="spec.yaml"), tmp_path)
