"""RoPE's context extension (linear, llama3, yarn) against transformers' rope init functions,
whole models with scaled RoPE against transformers (Llama 3.1-style llama3, DeepSeek's yarn with
its attention mscale), and the validation of the new rope parameters."""

import math

import pytest
import torch

import explorer
from tests.helpers.hf_reference import assert_same_logits, load_exactly, randomize, tokens, transformers

pytestmark = pytest.mark.usefixtures("one_thread")

ROPE_SCALINGS = [
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 64},
    {"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 64},
    {"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 64,
     "beta_fast": 16, "beta_slow": 2, "mscale": 0.707, "mscale_all_dim": 0.5},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
     "truncate": False, "attention_factor": 1.3},
]


def _rope_spec(make_spec, positional, emb_dim=64, n_heads=2):
    return make_spec(model={"emb_dim": emb_dim, "n_heads": n_heads, "context_length": 512},
                     positional={"name": "rope", **positional})


def _converted(scaling):
    """The rope parameters spec-from-hf writes for a Llama config with ``scaling``."""
    from explorer.spec.hf_config import convert

    config = {"model_type": "llama", "vocab_size": 256, "hidden_size": 64,
              "intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2,
              "max_position_embeddings": 512, "rope_theta": 5000.0, "rope_scaling": scaling}
    doc, _ = convert(config, "config.json", explorer.get_plugin_manager().registry())
    return {k: v for k, v in doc["components"]["positional"].items() if k != "name"}, config


@pytest.mark.parametrize("scaling", ROPE_SCALINGS, ids=lambda s: s["rope_type"])
def test_frequencies_and_attention_factor_equal_transformers(make_spec, scaling):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    positional, config = _converted(dict(scaling))
    rope = explorer.build_model(_rope_spec(make_spec, positional)).pos_emb
    hf_config = transformers.LlamaConfig(**{k: v for k, v in config.items() if k != "model_type"})
    want, attention_factor = ROPE_INIT_FUNCTIONS[scaling["rope_type"]](hf_config, "cpu")
    torch.testing.assert_close(rope.inv_freq, want.float(), rtol=1e-6, atol=0)
    assert rope.attention_factor == pytest.approx(attention_factor, rel=1e-12)
    plain = explorer.build_model(_rope_spec(make_spec, {"theta": 5000.0})).pos_emb
    assert not torch.allclose(rope.inv_freq, plain.inv_freq)  # the scaling did something


def test_llama3_by_hand(make_spec):
    """Head size 32, theta 5000, original context 64: pair j has wavelength 2 pi 5000^(j/16).
    Wavelengths above 64 / 1 are divided by 8, below 64 / 4 = 16 kept, between smoothed:
    pair 0 (wavelength 6.28) keeps 1; pair 15 (wavelength 2 pi 5000^(15/16) > 64) is / 8."""
    positional, _ = _converted(ROPE_SCALINGS[1])
    inv_freq = explorer.build_model(_rope_spec(make_spec, positional)).pos_emb.inv_freq
    assert inv_freq[0].item() == 1.0
    assert inv_freq[15].item() == pytest.approx(5000 ** (-30 / 32) / 8, rel=1e-6)
    j = 4  # wavelength 2 pi 5000^(1/4) = 52.8: between 16 and 64
    wavelength = 2 * math.pi * 5000 ** (2 * j / 32)
    smooth = (64 / wavelength - 1) / (4 - 1)
    base = 5000 ** (-2 * j / 32)
    assert inv_freq[j].item() == pytest.approx((1 - smooth) * base / 8 + smooth * base, rel=1e-6)


def test_attention_factor_scales_cos_and_sin(make_spec):
    rope = explorer.build_model(_rope_spec(make_spec, {"scaling": "linear", "factor": 2.0,
                                                       "attention_factor": 1.5})).pos_emb
    q = torch.randn(1, 1, 3, 32, generator=torch.Generator().manual_seed(0))
    rotated, _ = rope.rotate(q, q, torch.arange(3))
    assert rotated.norm(dim=-1).div(q.norm(dim=-1)).flatten().tolist() == pytest.approx([1.5] * 3)


def test_llama_with_llama3_scaling_equals_transformers(write_spec, tmp_path):
    """Positions past the original context (64), where the scaling matters."""
    config = transformers.LlamaConfig(
        vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rope_theta=500000.0, rope_scaling=dict(ROPE_SCALINGS[1], original_max_position_embeddings=16),
        tie_word_embeddings=False, attn_implementation="eager")
    torch.manual_seed(0)
    hf = randomize(transformers.LlamaForCausalLM(config))
    hf.save_pretrained(tmp_path)
    ours = explorer.load_model(explorer.spec_from_hf(tmp_path), tmp_path).eval()
    assert_same_logits(ours, hf, tokens(1, 100))


def test_deepseek_with_yarn_and_its_mscale_equals_transformers(write_spec, tmp_path):
    """DeepSeek multiplies the scores' scale by mscale(factor, mscale_all_dim)^2 on top of
    YaRN's frequencies: spec-from-hf's score_scale."""
    from tests.helpers.hf_reference import DEEPSEEK_MLA as MLA, from_deepseek

    config = transformers.DeepseekV2Config(
        vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, q_lora_rank=None, max_position_embeddings=128,
        first_k_dense_replace=2, n_routed_experts=4, num_experts_per_tok=2,
        moe_intermediate_size=8, rope_theta=10000.0, tie_word_embeddings=False,
        rope_scaling={"type": "yarn", "factor": 8.0, "original_max_position_embeddings": 16,
                      "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
        attn_implementation="eager", **MLA)
    torch.manual_seed(0)
    hf = randomize(transformers.DeepseekV2ForCausalLM(config))
    config.save_pretrained(tmp_path)
    spec = explorer.spec_from_hf(tmp_path)
    attention = spec.components["attention"].params
    assert attention["score_scale"] == pytest.approx((0.1 * 0.707 * math.log(8) + 1) ** 2)
    ours = load_exactly(explorer.build_model(spec), from_deepseek(hf))
    assert_same_logits(ours, hf, tokens(2, 60))


@pytest.mark.parametrize("positional, key, fragment", [
    ({"scaling": "yarn"}, "original_context", "yarn needs the pre-training context length"),
    ({"scaling": "llama3", "original_context": 8, "high_freq_factor": 1.0}, "high_freq_factor",
     r"must be above low_freq_factor 1\.0, got 1\.0"),
    ({"scaling": "ntk"}, "scaling", "'ntk' is not one of"),
    ({"factor": 0.0}, "factor", r"must be > 0, got 0\.0"),
    ({"attention_factor": -1.0}, "attention_factor", "must be > 0"),
])
def test_bad_scaling_is_a_one_line_spec_error(make_spec, positional, key, fragment):
    with pytest.raises(explorer.SpecError, match=rf"components\.positional\.{key}: {fragment}"):
        _rope_spec(make_spec, positional)
