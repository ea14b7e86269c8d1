"""Hugging Face config.json -> spec: every built-in converter on tiny transformers models
(logits equal to 1e-4 with the weights copied), the published configs, the one-line refusals,
spec-from-hf's YAML, explorer build on a config, and converters as a plugin kind."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

import explorer
from explorer.spec.hf_config import convert, shown_document, spec_from_hf
from tests.helpers import run_cli
from tests.helpers.hf_reference import assert_same_logits, load_exactly, randomize, tokens, transformers
from tests.helpers.published_configs import DEEPSEEK_V3, GPT2, MORE_MODELS, PUBLISHED, REAL_MODELS

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
             num_attention_heads=4, max_position_embeddings=64)


def registry():
    return explorer.get_plugin_manager().registry()


def converted(config, source="config.json"):
    return convert(config, source, registry())[0]


# -- tiny transformers models: the converted spec computes what transformers computes ----------

def _saved(tmp_path, config):
    torch.manual_seed(0)
    hf = randomize(transformers.AutoModelForCausalLM.from_config(config,
                                                                 attn_implementation="eager"))
    hf.save_pretrained(tmp_path)  # transformers 5's config.json (rope_parameters, layer_types)
    return hf


LLAMA_FAMILY = {
    "llama": lambda: transformers.LlamaConfig(**SMALL, num_key_value_heads=2, rope_theta=5e5,
                                              attention_bias=True, mlp_bias=True),
    "mistral": lambda: transformers.MistralConfig(**SMALL, num_key_value_heads=2, sliding_window=5),
    "qwen2": lambda: transformers.Qwen2Config(**SMALL, num_key_value_heads=2, use_sliding_window=True,
                                              sliding_window=6, max_window_layers=1,
                                              tie_word_embeddings=True),
    "qwen3": lambda: transformers.Qwen3Config(**SMALL, num_key_value_heads=2, head_dim=12,
                                              layer_types=["sliding_attention", "full_attention",
                                                           "sliding_attention"],
                                              use_sliding_window=True, sliding_window=4),
    "mixtral": lambda: transformers.MixtralConfig(**{**SMALL, "intermediate_size": 24},
                                                  num_key_value_heads=2, num_local_experts=4,
                                                  sliding_window=7),
    "phi3": lambda: transformers.Phi3Config(**SMALL, num_key_value_heads=2, sliding_window=5,
                                            pad_token_id=0, resid_pdrop=0.1),
    "gemma2": lambda: transformers.Gemma2Config(**SMALL, num_key_value_heads=2, head_dim=12,
                                                sliding_window=5, query_pre_attn_scalar=10,
                                                attn_logit_softcapping=5.0,
                                                final_logit_softcapping=3.0),
}


@pytest.mark.parametrize("model_type", LLAMA_FAMILY)
def test_llama_family_configs_compute_what_transformers_computes(tmp_path, model_type):
    """Windows on some layers (qwen2's max_window_layers, qwen3's layer_types, gemma2's
    alternation), head_dim apart from hidden / heads, biases, experts: 30 positions, past
    every window."""
    hf = _saved(tmp_path, LLAMA_FAMILY[model_type]())
    ours = explorer.load_model(spec_from_hf(tmp_path), tmp_path)
    assert_same_logits(ours.eval(), hf, tokens(2, 30))


def test_gpt2_config_computes_what_transformers_computes(tmp_path):
    hf = _saved(tmp_path, transformers.GPT2Config(vocab_size=256, n_embd=32, n_layer=2, n_head=4,
                                                  n_positions=64, n_inner=96))
    spec = spec_from_hf(tmp_path)
    assert spec.components["ffn"].params["expansion"] == 3
    assert_same_logits(explorer.load_model(spec, tmp_path).eval(), hf, tokens(2, 20))


@pytest.mark.parametrize("version", ["deepseek_v2", "deepseek_v3"])
def test_deepseek_configs_compute_what_transformers_computes(tmp_path, version):
    """A dense first layer, then routed + shared experts (V3: sigmoid, groups, score bias)."""
    from tests.helpers.hf_reference import DEEPSEEK_MLA as MLA, from_deepseek

    common = dict(SMALL, num_key_value_heads=4, q_lora_rank=10, first_k_dense_replace=1,
                  n_routed_experts=8, num_experts_per_tok=3, n_shared_experts=1, moe_intermediate_size=8,
                  routed_scaling_factor=2.5, **MLA)
    if version == "deepseek_v2":
        config = transformers.DeepseekV2Config(**common, topk_method="group_limited_greedy",
                                               n_group=4, topk_group=2)
    else:
        config = transformers.DeepseekV3Config(**common, n_group=4, topk_group=2)
    hf = _saved(tmp_path, config)
    spec = spec_from_hf(tmp_path)
    ours = load_exactly(explorer.build_model(spec), from_deepseek(hf))
    if version == "deepseek_v3":
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for i in (1, 2):
                bias = torch.randn(8, generator=gen)
                hf.model.layers[i].mlp.gate.e_score_correction_bias.copy_(bias)
                ours.trf_blocks[i].ff.score_bias.copy_(bias)
    assert [type(b.ff).__name__ for b in ours.trf_blocks] == ["GLU", "MixtureOfExperts",
                                                             "MixtureOfExperts"]
    assert_same_logits(ours, hf, tokens(2, 20))


# -- the published configs ------------------------------------------------------------------------

@pytest.mark.parametrize("name", PUBLISHED)
def test_published_configs_convert_and_load_back_from_yaml(tmp_path, name, capsys):
    """spec-from-hf's YAML is a spec that loads back to the same Spec."""
    config = PUBLISHED[name][1]
    (tmp_path / "config.json").write_text(json.dumps(config))
    code, out, err = run_cli(capsys, "spec-from-hf", tmp_path)
    assert code == 0, err
    assert out.startswith(f"# explorer spec-from-hf {tmp_path / 'config.json'}\n")
    (tmp_path / "spec.yaml").write_text(out)
    assert explorer.load_spec(tmp_path / "spec.yaml").to_dict() == spec_from_hf(tmp_path).to_dict()


@pytest.mark.parametrize("name", PUBLISHED)
def test_spec_from_hf_json_is_the_yaml_document(tmp_path, name, capsys):
    """--format json prints the document the YAML shows; JSON is YAML, so the spec reader
    loads it (under any file name) to the same Spec. (On the command line a SPEC ending in
    .json names a Hugging Face config: save the JSON spec as .yaml for explorer build.)"""
    config = PUBLISHED[name][1]
    (tmp_path / "config.json").write_text(json.dumps(config))
    code, yaml_text, err = run_cli(capsys, "spec-from-hf", tmp_path)
    assert code == 0, err
    code, json_text, err = run_cli(capsys, "spec-from-hf", tmp_path, "--format", "json")
    assert code == 0, err
    assert json.loads(json_text) == yaml.safe_load(yaml_text)
    (tmp_path / "spec.json").write_text(json_text)
    assert explorer.load_spec(tmp_path / "spec.json").to_dict() == spec_from_hf(tmp_path).to_dict()
    code, _, err = run_cli(capsys, "spec-from-hf", tmp_path, "--format", "json",
                       "--out", tmp_path / "out.json")
    assert code == 0, err
    assert (tmp_path / "out.json").read_text() == json_text


def test_what_the_published_configs_become():
    """The fields that make each model what it is, by hand from the config.json files."""
    llama = converted(REAL_MODELS["llama3_8b"][1])
    assert llama["components"]["attention"] == {"name": "gqa", "n_kv_heads": 8, "out_bias": False}
    assert llama["components"]["positional"] == {"name": "rope", "theta": 500000.0}
    assert llama["components"]["norm"] == {"name": "rmsnorm", "eps": 1e-05}
    assert llama["tokenizer"] == "bytes" and llama["model"]["vocab_size"] == 128256
    assert converted(REAL_MODELS["mistral_7b"][1])["components"]["attention"]["window"] == 4096
    qwen = converted(REAL_MODELS["qwen3_0.6b"][1])
    assert qwen["components"]["attention"]["head_dim"] == 128
    assert qwen["components"]["attention"]["qk_norm"] is True
    assert qwen["components"]["weight_tying"] == {"name": "tied"}
    gemma = converted(REAL_MODELS["gemma2_2b"][1])
    assert gemma["layers"] == [{"every": 2, "offset": 0,
                                "components": {"attention": {"window": 4096}}}]
    assert gemma["model"]["logit_softcap"] == 30.0 and gemma["model"]["scale_embeddings"]
    lite = converted(REAL_MODELS["deepseek_v2_lite"][1])
    assert lite["layers"] == [{"first": 1, "components": {"ffn": {"name": "glu", "hidden": 10944}}}]
    assert lite["components"]["ffn"]["router"] == "softmax_topk"
    assert "n_groups" not in lite["components"]["ffn"]  # greedy: n_group 1 is no groups
    v3 = converted(DEEPSEEK_V3)["components"]["ffn"]
    assert (v3["router"], v3["n_groups"], v3["topk_groups"], v3["group_score"], v3["score_bias"]
            ) == ("sigmoid_topk_renorm", 8, 4, "top2_sum", True)
    gpt2 = converted(GPT2)
    assert gpt2["tokenizer"] == "gpt2" and gpt2["components"]["attention"] == {"name": "mha"}


def test_what_more_published_configs_become():
    """Qwen2.5's use_mrope: false, SmolLM2's nanotron fields and Gemma 2 9B's
    sliding_window_size are ignored; the rest is read, by hand from the config.json files."""
    qwen = converted(MORE_MODELS["qwen2.5_0.5b"][1])
    assert qwen["model"]["qkv_bias"] is True and "window" not in qwen["components"]["attention"]
    assert qwen["components"]["attention"]["n_kv_heads"] == 2
    smol = converted(MORE_MODELS["smollm2_135m"][1])
    assert smol["components"]["attention"]["n_kv_heads"] == 3
    assert smol["components"]["positional"] == {"name": "rope", "theta": 100000.0}
    assert smol["components"]["weight_tying"] == {"name": "tied"}
    llama = converted(MORE_MODELS["llama3.2_1b"][1])
    assert llama["components"]["positional"] == {
        "name": "rope", "theta": 500000.0, "scaling": "llama3", "factor": 32.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_context": 8192}
    assert "head_dim" not in llama["components"]["attention"]  # 64 = 2048 / 32
    nemo = converted(MORE_MODELS["mistral_nemo_base_2407"][1])
    assert nemo["components"]["attention"]["head_dim"] == 128  # not 5120 / 32 = 160
    assert "window" not in nemo["components"]["attention"]  # sliding_window: null
    gemma = converted(MORE_MODELS["gemma2_9b"][1])
    assert gemma["layers"] == [{"every": 2, "offset": 0,
                                "components": {"attention": {"window": 4096}}}]
    assert gemma["components"]["attention"]["query_pre_attn_scalar"] == 256
    phi3 = converted(MORE_MODELS["phi3_mini_4k_instruct"][1])
    assert phi3["components"]["attention"] == {"name": "gqa", "n_kv_heads": 32,
                                               "out_bias": False, "window": 2047}
    assert phi3["model"]["qkv_bias"] is False and phi3["components"]["ffn"]["hidden"] == 8192
    resid = converted({**MORE_MODELS["phi3_mini_4k_instruct"][1], "resid_pdrop": 0.1})
    assert resid["model"]["dropout"] == {"residual": 0.1}


# -- refusals: one line naming the field -----------------------------------------------------------

BASE = {"model_type": "llama", "vocab_size": 256, "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4}


@pytest.mark.parametrize("change, message", [
    ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}},
     r"rope_scaling: rope_type 'dynamic' has no explorer equivalent; explorer's rope computes "
     r"default, linear, llama3, yarn"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, r"rope_scaling: llama3 needs "
                                                               r"low_freq_factor"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0, "mrope_section": [1]}},
     r"rope_scaling: mrope_section is not a linear setting explorer knows"),
    ({"hidden_act": "xielu"}, r"hidden_act: 'xielu' has no explorer activation; explorer "
                              r"computes gelu, .*silu"),
    ({"partial_rotary_factor": 0.5}, r"partial_rotary_factor: 0.5: rope on part of each head"),
    ({"shiny_new_field": 3}, r"shiny_new_field: the llama converter does not know this field "
                             r"\(value 3\), so it cannot tell whether it changes the model; if "
                             r"it does not, ignore it: --ignore-config-field shiny_new_field "
                             r"\(Python: ignore_config_fields=\['shiny_new_field'\]\); if it "
                             r"does, ignore it and set what it changes with --set KEY=VALUE"),
    ({"rope_interleaved": True}, r"rope_interleaved: true: the llama converter knows that this "
                                 r"field changes nothing only at false; to convert the config "
                                 r"without it: --ignore-config-field rope_interleaved"),
    ({"model_type": "qwen2", "use_mrope": True}, r"use_mrope: true: the qwen2 converter knows "
                                                 r"that this field changes nothing only at false"),
    ({"is_encoder_decoder": True}, r"is_encoder_decoder: true: the llama converter knows that "
                                   r"this field changes nothing only at false"),
    ({"hidden_size": "32"}, r"hidden_size: expected an integer, got \"32\""),
    ({"vocab_size": None}, r"vocab_size: missing; a llama config.json sets it"),
    ({"model_type": "mamba"}, r"model_type: unknown model_type 'mamba'; did you mean 'mamba2'\?"
                              r" registered: deepseek_v2, deepseek_v3, gemma2, gpt2, llama, "
                              r"mamba2, mistral, mixtral"),
    ({"model_type": None}, r"model_type: missing or not a string"),
    ({"num_attention_heads": 5}, r"hidden_size \(spec key model.emb_dim\): emb_dim 32 is not "
                                 r"divisible by n_heads 5"),
])
def test_what_a_spec_cannot_express_is_one_line(tmp_path, capsys, change, message):
    (tmp_path / "config.json").write_text(json.dumps({**BASE, **change}))
    for command in ("spec-from-hf", "build"):
        code, out, err = run_cli(capsys, command, tmp_path)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith(f"Error: {tmp_path / 'config.json'}: "), err
        assert __import__("re").search(message, err), err


@pytest.mark.parametrize("model_type, change, message", [
    ("mixtral", {"router_jitter_noise": 0.1}, "router_jitter_noise: 0.1: explorer's moe adds "
                                              "no noise"),
    ("gemma2", {"use_bidirectional_attention": True}, "use_bidirectional_attention: true"),
    ("deepseek_v2", {"norm_topk_prob": True}, "norm_topk_prob: true: transformers' DeepSeek-V2 "
                                              "never renormalises"),
    ("deepseek_v3", {"scoring_func": "softmax"}, "scoring_func: 'softmax': transformers' "
                                                 "deepseek_v3 computes sigmoid"),
    ("qwen2", {"layer_types": ["full_attention"]}, "layer_types: expected 2 entries"),
])
def test_architecture_refusals(tmp_path, model_type, change, message):
    (tmp_path / "config.json").write_text(json.dumps({**BASE, "model_type": model_type,
                                                      "num_experts_per_tok": 2, **change}))
    with pytest.raises(explorer.SpecError, match=message.replace("(", r"\(")):
        spec_from_hf(tmp_path)


def test_ignore_config_field_reads_the_field_as_absent(tmp_path, capsys):
    """What the refusal advises: spec-from-hf, build and spec_from_hf read an ignored field as
    if config.json lacked it (a name the file lacks changes nothing)."""
    (tmp_path / "config.json").write_text(json.dumps({**BASE, "shiny_new_field": 3,
                                                      "rope_interleaved": True}))
    ignored = ("--ignore-config-field", "shiny_new_field", "--ignore-config-field",
               "rope_interleaved", "--ignore-config-field", "not_in_the_file")
    code, out, err = run_cli(capsys, "spec-from-hf", tmp_path, *ignored, "--format", "json")
    assert code == 0, err
    want = shown_document(converted(BASE))
    assert (json.loads(out)["model"], json.loads(out)["components"]) == (want["model"],
                                                                        want["components"])
    code, out, err = run_cli(capsys, "build", tmp_path, *ignored, "--only", "params",
                             "--format", "json")
    assert code == 0, err
    spec = spec_from_hf(tmp_path, ignore_config_fields=["shiny_new_field", "rope_interleaved"])
    total = sum(p.numel() for p in explorer.build_model(spec, device="meta").parameters())
    assert json.loads(out)["analyses"]["params"]["total"] == total
    code, out, err = run_cli(capsys, "compare", tmp_path, tmp_path, *ignored, "--only",
                             "params", "--format", "json")
    assert code == 0, err
    assert [r["analyses"]["params"]["total"] for r in json.loads(out)["reports"]] == [total] * 2
    code, _, err = run_cli(capsys, "export", tmp_path, *ignored, "--to", "hf", tmp_path / "out")
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "config.json").read_text())["hidden_size"] == 32
    code, _, err = run_cli(capsys, "build", tmp_path, ignored[0], ignored[1], "--only", "params")
    assert code == 2 and "rope_interleaved: true:" in err


def test_ignore_config_field_applies_to_the_config_beside_the_weights(tmp_path, capsys):
    """A Qwen2 folder whose config.json says use_mrope: true (which transformers' Qwen2
    ignores): refused when converted, as SPEC or beside --weights, until the field is ignored;
    then the weights give transformers' logits, through the API and the CLI."""
    hf = _saved(tmp_path, LLAMA_FAMILY["qwen2"]())
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "use_mrope": True}))
    with pytest.raises(explorer.SpecError, match="use_mrope: true"):
        spec_from_hf(tmp_path)
    code, _, err = run_cli(capsys, "spec-from-hf", tmp_path, "--ignore-config-field", "use_mrope",
                           "--out", tmp_path / "spec.yaml")
    assert code == 0, err
    with pytest.raises(explorer.SpecError, match="config.json: use_mrope: true"):
        explorer.load_model(explorer.load_spec(tmp_path / "spec.yaml"), tmp_path)
    for spec in (spec_from_hf(tmp_path, ignore_config_fields=["use_mrope"]),
                 explorer.load_spec(tmp_path / "spec.yaml", ignore_config_fields=["use_mrope"])):
        assert_same_logits(explorer.load_model(spec, tmp_path).eval(), hf,
                           tokens(2, 30))
    generate = ("generate", tmp_path / "spec.yaml", "--weights", tmp_path, "--prompt", "ab",
                "--max-new-tokens", "3", "--format", "json")
    code, _, err = run_cli(capsys, *generate)
    assert code == 2 and "use_mrope: true" in err
    code, out, err = run_cli(capsys, *generate, "--ignore-config-field", "use_mrope")
    assert code == 0, err
    prompt = torch.tensor([list(b"ab")])
    want = hf.generate(prompt, max_new_tokens=3, do_sample=False)[0].tolist()
    assert json.loads(out)["token_ids"] == want


def test_unreadable_configs(tmp_path):
    with pytest.raises(explorer.ExplorerError, match=r"config\.json: no such file"):
        spec_from_hf(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(explorer.ExplorerError, match="config.json: not readable JSON"):
        spec_from_hf(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(explorer.ExplorerError, match="holds a JSON list, not a mapping"):
        spec_from_hf(tmp_path)


def test_null_is_a_value_and_absent_takes_the_default():
    """As in transformers: Mistral's absent sliding_window is 4096, null is none; Llama's
    absent num_key_value_heads is one per query head."""
    mistral = {**BASE, "model_type": "mistral"}
    assert converted(mistral)["components"]["attention"]["window"] == 4096
    assert "window" not in converted({**mistral, "sliding_window": None})["components"]["attention"]
    assert converted(BASE)["components"]["attention"]["n_kv_heads"] == 4
    assert converted({**mistral})["components"]["attention"]["n_kv_heads"] == 8


# -- explorer build on a config -----------------------------------------------------------------

def test_build_on_a_config_runs_the_shape_only_analyses(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps(REAL_MODELS["llama3_8b"][1]))
    code, out, err = run_cli(capsys, "build", tmp_path / "config.json", "--format", "json",
                         "--set", "analyses.memory.seq_len=256")
    assert code == 0, err
    report = json.loads(out)
    assert list(report["analyses"]) == ["params", "memory", "flops", "summary"]
    assert report["analyses"]["params"]["total"] == 8_030_261_248
    kv = report["analyses"]["memory"]["kv_cache"]
    assert kv["bytes_per_token"]["bf16"] == 2 * 32 * 8 * 128 * 2  # K and V, 32 layers, 8 heads


def test_build_on_a_config_refuses_weights_it_cannot_hold(tmp_path, capsys):
    """Asking for an analysis that needs the weights follows the usual memory refusal:
    Mixtral 8x7B's 46.7 billion fp32 weights (174 GiB) fit nowhere here."""
    (tmp_path / "config.json").write_text(json.dumps(REAL_MODELS["mixtral_8x7b"][1]))
    code, out, err = run_cli(capsys, "build", tmp_path, "--only", "samples")
    assert code == 2 and out == ""
    assert "the weights need 174.0 GiB but only" in err
    assert "analyses that need only shapes can still run: --only flops,memory,params,summary" in err


def test_summary_counts_a_deep_moe_tree(make_spec):
    """Every row is its own parameters plus its children's, experts (depth 4) included."""
    from explorer.plugins.analyses.summary import module_rows

    spec = make_spec(model={"vocab_size": 256}, ffn={"name": "moe", "n_experts": 3, "hidden": 4,
                                                     "n_shared": 1})
    rows = module_rows(explorer.build_model(spec, device="meta"), 4)
    for row in rows:
        children = [r for r in rows if r["depth"] == row["depth"] + 1
                    and r["name"].startswith(row["name"] + "." if row["name"] else "")]
        assert row["params"] == row["own_params"] + sum(c["params"] for c in children)
    assert rows[0]["params"] == sum(p.numel() for p in explorer.build_model(spec).parameters())


# -- converters are a plugin kind -------------------------------------------------------------

PLUGIN = '''
from explorer import ConfigConverter, hookimpl


def convert(cfg):
    cfg.set("tokenizer", "bytes")
    cfg.set("model.vocab_size", cfg.integer("vocab_size"), "vocab_size")
    for key, field in (("context_length", "n_ctx"), ("emb_dim", "width"), ("n_heads", "heads"),
                       ("n_layers", "depth")):
        cfg.set(f"model.{key}", cfg.integer(field), field)
    cfg.choose("norm", "rmsnorm")


@hookimpl
def explorer_config_converters():
    return [ConfigConverter("toy", convert, "A toy architecture.", ignores=("comment",))]
'''


def test_a_third_party_converter_is_one_plugin(tmp_path, capsys):
    plugin = tmp_path / "toy_converter.py"
    plugin.write_text(PLUGIN)
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "toy", "vocab_size": 300, "n_ctx": 16, "width": 32, "heads": 4, "depth": 2,
        "comment": "ignored"}))
    code, out, err = run_cli(capsys, "spec-from-hf", tmp_path, "-p", plugin)
    assert code == 0, err
    assert yaml.safe_load(out)["model"] == {"vocab_size": 300, "context_length": 16,
                                            "emb_dim": 32, "n_heads": 4, "n_layers": 2}
    code, out, err = run_cli(capsys, "build", tmp_path, "-p", plugin, "--only", "params")
    assert code == 0 and "total" in out, err
    code, out, _ = run_cli(capsys, "plugins", "--kind", "config_converter", "-p", plugin)
    assert "  toy              A toy architecture." in out and "  llama " in out
    assert "      ignores: comment" in out
    manager = explorer.get_plugin_manager(plugins=[str(plugin)])
    manager.load(str(plugin))
    assert manager.registry().provider[("config_converter", "toy")].plugin == str(plugin.resolve())


def test_a_converter_that_crashes_is_named(tmp_path, capsys):
    plugin = tmp_path / "broken.py"
    plugin.write_text(PLUGIN.replace('cfg.choose("norm", "rmsnorm")', "1 / 0"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "toy"}))
    code, _, err = run_cli(capsys, "spec-from-hf", tmp_path, "-p", plugin)
    assert code == 2 and "config converter 'toy' failed" in err or "vocab_size: missing" in err


def test_spec_from_hf_does_not_import_torch(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(REAL_MODELS["mixtral_8x7b"][1]))
    code = ("import sys; from explorer.cli import main\n"
            f"try:\n    main(['spec-from-hf', {str(tmp_path)!r}])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "name: moe" in proc.stdout


@pytest.mark.slow
def test_build_on_deepseek_v3_costs_671_billion_parameters(tmp_path, capsys):
    """61 layers, 58 of 256 experts each (about 80,000 modules) on the meta device: about a
    minute on 2 cores. The fast tests cover the same path on Llama 3 8B."""
    (tmp_path / "config.json").write_text(json.dumps(DEEPSEEK_V3))
    code, out, err = run_cli(capsys, "build", tmp_path, "--format", "json",
                         "--set", "analyses.memory.seq_len=1024")
    assert code == 0, err
    analyses = json.loads(out)["analyses"]
    assert analyses["params"]["total"] == 671_026_404_352
    assert analyses["memory"]["kv_cache"]["bytes_per_token"]["bf16"] == 61 * (512 + 64) * 2
