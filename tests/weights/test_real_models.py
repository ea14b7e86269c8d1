"""specs/models/*.yaml: the published configs converted by spec-from-hf, their parameter counts
equal transformers' models built from the same configs on the meta device (nothing is
downloaded), total vs active for the mixtures of experts, and the README table's script."""

import copy
import functools
import json
from pathlib import Path

import pytest
import torch

import explorer
from explorer.measure.costs import parameter_count
from explorer.model import contracts
from explorer.model.stack import stack_total
from tests.helpers import ROOT, load_script
from tests.helpers.hf_reference import transformers
from tests.helpers.published_configs import MORE_MODELS, REAL_MODELS

SPECS = ROOT / "specs" / "models"


def spec_of(name):
    return explorer.load_spec(SPECS / f"{name}.yaml")


def hf_on_meta(config):
    # A copy: from_dict rewrites nested dicts in place (rope_scaling gains rope_theta), which
    # would change the published configs for the tests that run after.
    config = transformers.CONFIG_MAPPING[config["model_type"]].from_dict(copy.deepcopy(config))
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(config)


@functools.lru_cache(maxsize=None)
def hf_of(name):
    """transformers' meta-device model of a published config, built once for every test here."""
    return hf_on_meta(REAL_MODELS[name][1])


@functools.lru_cache(maxsize=None)
def ours_of(name):
    """The compact meta model (one block per distinct layer; Qwen3-Next's 48 x 512 experts
    would take a minute to build in full), counted through its plan."""
    return explorer.build_model(spec_of(name), device="meta", compact=True)


def count(model, measure=parameter_count, block_measure=None):
    return stack_total(model, measure, block_measure)


def test_every_spec_in_specs_models_is_a_published_config():
    assert sorted(p.stem for p in SPECS.glob("*.yaml")) == sorted(REAL_MODELS)


@pytest.mark.parametrize("name", REAL_MODELS)
def test_specs_are_spec_from_hf_of_the_published_config(tmp_path, name):
    model_id, config = REAL_MODELS[name]
    folder = tmp_path / model_id.split("/")[1]  # spec-from-hf names the spec after the folder
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    assert explorer.spec_from_hf(folder).to_dict() == spec_of(name).to_dict()
    assert (SPECS / f"{name}.yaml").read_text().startswith(f"# {model_id}: ")


@pytest.mark.parametrize("name", REAL_MODELS)
def test_parameter_counts_equal_transformers_on_meta(name):
    hf, ours = hf_of(name), ours_of(name)
    assert count(ours) == sum(p.numel() for p in hf.parameters())


# DeepSeek-V3's 61 layers of 256 experts take a minute: tests/spec/test_hf_config.py counts them (slow).
@pytest.mark.parametrize("name", [name for name in MORE_MODELS if name != "deepseek_v3"])
def test_more_published_configs_count_what_transformers_counts(tmp_path, name):
    """Configs that carry fields explorer ignores (Qwen2.5's use_mrope: false, SmolLM2's
    nanotron fields, Gemma 2 9B's sliding_window_size) or a head_dim apart from hidden / heads
    (Mistral Nemo's 128 at 5120 / 32), converted as `explorer build CONFIG` converts them."""
    config = MORE_MODELS[name][1]
    (tmp_path / "config.json").write_text(json.dumps(config))
    ours = explorer.build_model(explorer.spec_from_hf(tmp_path), device="meta")
    hf = hf_on_meta(config)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


# Known figures: Llama 3 8B's 8.03 B, Mixtral's 46.7 B of which 12.9 B active (2 of 8 experts),
# Qwen3-30B-A3B's 30.5 B of which 3.3 B active (8 of 128), as Qwen's model card gives them.
# Qwen3-Next-80B-A3B: 79.7 B of which 3.9 B active (10 of 512 experts, embeddings included).
KNOWN = {"llama3_8b": (8_030_261_248, 8_030_261_248),
         "mixtral_8x7b": (46_702_792_704, 12_879_925_248),
         "deepseek_v2_lite": (15_706_484_224, 2_661_150_208),
         "qwen3_30b_a3b": (30_532_122_624, 3_353_032_704),
         "qwen3_next_80b_a3b": (79_674_391_296, 3_874_929_408)}


@pytest.mark.parametrize("name", ["mixtral_8x7b", "deepseek_v2_lite", "qwen3_30b_a3b",
                                  "qwen3_next_80b_a3b"])
def test_active_parameters_of_the_mixtures(name):
    """Active = all parameters less, in each MoE layer of transformers' model, the routed
    experts a token does not use: (n_experts - top_k) / n_experts of them."""
    config = REAL_MODELS[name][1]
    hf = hf_of(name)
    n = (config.get("num_local_experts") or config.get("num_experts")
         or config["n_routed_experts"])
    k = config["num_experts_per_tok"]
    unused = sum(sum(p.numel() for p in layer.mlp.experts.parameters()) * (n - k) // n
                 for layer in hf.model.layers if hasattr(layer.mlp, "experts"))
    ours = ours_of(name)
    active = count(ours, contracts.active_parameter_count, contracts.active_count_of_block)
    assert active == sum(p.numel() for p in hf.parameters()) - unused
    assert (count(ours), active) == KNOWN[name]


# -- the README table ------------------------------------------------------------------------

# The hybrid and state-space models' configs are written here from their model cards; their
# transformers config classes default to the same models, so every field they share must agree,
# but for what these files say and the defaults do not.
CONFIG_DEFAULTS = {
    "qwen3_next_80b_a3b": ("Qwen3NextConfig", {
        "max_position_embeddings",  # 262,144 (the model card's context) against 32,768
        "intermediate_size",  # 5,120 against 5,632: unused, every layer is a mixture
        "bos_token_id", "eos_token_id"}),
    "mamba_codestral_7b": ("Mamba2Config", {"eos_token_id", "pad_token_id"}),
    "nemotron_h_8b": ("NemotronHConfig", {"max_position_embeddings"}),  # 8K against 4K
}


@pytest.mark.parametrize("name", sorted(CONFIG_DEFAULTS))
def test_mixer_model_configs_agree_with_their_transformers_defaults(name):
    class_name, differing = CONFIG_DEFAULTS[name]
    config = REAL_MODELS[name][1]
    defaults = getattr(transformers, class_name)().to_dict()
    shared = set(config) & set(defaults) - {"architectures", "transformers_version"}
    assert len(shared) > 15
    assert {k for k in shared if config[k] != defaults[k]} == differing


def test_table_row_by_hand(make_spec):
    """A tiny MoE: width 16, 2 layers, 4 heads of 4, 2 KV heads, experts of 8 (4, top 1),
    context 32. Parameters: embedding and head 2 * 256 * 16, per layer attention 16 * 16 * 2 +
    16 * 8 * 2, router 64, experts 4 * 384, norms 32, final norm 16. KV cache per token in
    bf16: 2 layers * 2 (K, V) * 2 heads * 4 * 2 bytes = 64 bytes; at the context 32 tokens."""
    spec = make_spec(norm="rmsnorm", activation="silu", positional="rope",
                     attention={"name": "gqa", "n_kv_heads": 2, "out_bias": False},
                     ffn={"name": "moe", "n_experts": 4, "top_k": 1, "hidden": 8})
    cells = load_script("docs/real_models.py").row(Path(spec.source)).split(" | ")
    total = 2 * 256 * 16 + 2 * (768 + 64 + 4 * 384 + 32) + 16
    active = total - 2 * 3 * 384
    assert cells[1:6] == [f"{total:,}", f"{active:,}", "0.1 KiB",
                          f"{64 * 32 / 2**30:,.2f} GiB (32 tokens)", "none"]
    memory = explorer.analyze(explorer.load_spec(spec.source, overrides=[
        "analyses.memory.seq_len=32"]), only=["memory"])["analyses"]["memory"]
    assert cells[6] == f"{memory['training_total_bytes']['fp32'] / 2**30:,.1f} GiB"


# Mamba-2's state per layer: the convolution's last 3 inputs of x, B and C (8192 + 2 * 8 groups
# * 128 = 10,240 channels), and 128 heads of a 64 x 128 state matrix.
MAMBA_LAYER_STATE = 10_240 * 3 + 128 * 64 * 128


@pytest.mark.parametrize("name, mamba_layers, kv_values_per_token", [
    ("mamba_codestral_7b", 64, 0),
    ("nemotron_h_8b", 24, 4 * 2 * 8 * 128),  # 4 attention layers of 8 KV heads of 128
])
def test_the_memory_analysis_reports_state_per_sequence_beside_kv_per_token(
        name, mamba_layers, kv_values_per_token):
    """The recurrent state is per sequence, whatever its length; the KV cache of a hybrid's
    attention layers grows per token. The README table's row shows the state in MiB."""
    kv = explorer.analyze(spec_of(name), only=["memory"])["analyses"]["memory"]["kv_cache"]
    assert kv["state_bytes_per_sequence"] == {"fp32": 4 * mamba_layers * MAMBA_LAYER_STATE,
                                              "bf16": 2 * mamba_layers * MAMBA_LAYER_STATE}
    assert kv["bytes_per_token"]["bf16"] == 2 * kv_values_per_token
    cells = load_script("docs/real_models.py").row(SPECS / f"{name}.yaml").split(" | ")
    assert cells[5] == f"{2 * mamba_layers * MAMBA_LAYER_STATE / 2**20:,.1f} MiB"


@pytest.mark.parametrize("name", ["mamba_codestral_7b", "nemotron_h_8b"])
def test_flops_closed_form_equals_flop_counter_mode_on_mamba_and_the_hybrid(name):
    """The mamba2 layers' explorer_flops (the chunked scan) beside matmuls and the attention
    layers' Q.K^T: the closed form is what FlopCounterMode counts, at 300 tokens (Mamba-2's
    chunks of 256 and Nemotron-H's of 128, the last one padded)."""
    spec = explorer.load_spec(SPECS / f"{name}.yaml", overrides=["analyses.flops.seq_len=300"])
    flops = explorer.analyze(spec, only=["flops"])["analyses"]["flops"]
    assert flops["forward_per_token"]["mixer"] > 0
    assert flops["measured"]["forward_over_closed_form"] == pytest.approx(1.0, abs=1e-9)
