"""Hugging Face Llama-family weights in and out (llama, mistral, qwen2, qwen3, mixtral, gemma2,
qwen2_moe, qwen3_moe):
explorer -> transformers and back with equal logits for each model type, sharded files, the
model_type chosen from the spec, config.json checked against the spec, and the refusals."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file

import explorer
from explorer.cli import main
from explorer.weights import export_hf
from tests.helpers import ROOT, run_cli
from tests.helpers.hf_reference import TINY, assert_same_logits, randomize, tokens, transformers

pytestmark = pytest.mark.usefixtures("one_thread")

LLAMA = {"norm": {"name": "rmsnorm", "eps": 1e-5}, "activation": "silu",
         "ffn": {"name": "glu", "hidden": 48},
         "attention": {"name": "gqa", "n_kv_heads": 2, "out_bias": False},
         "positional": {"name": "rope", "theta": 10000.0}, "weight_tying": "none"}
MOE = {"name": "moe", "n_experts": 4, "top_k": 2, "hidden": 24}
DENSE_MIDDLE = [{"layers": [1], "components": {"ffn": {"name": "glu", "hidden": 48}}}]
GEMMA = {"norm": {"name": "rmsnorm", "eps": 1e-6, "unit_offset": True},
         "activation": "gelu_tanh", "residual": "sandwich", "weight_tying": "tied",
         "attention": {"name": "gqa", "n_kv_heads": 2, "out_bias": False, "head_dim": 12,
                       "softcap": 5.0, "query_pre_attn_scalar": 10}}

# model_type -> (components over LLAMA, model keys over TINY, layers)
SPECS = {
    "llama": ({"ffn": {"name": "glu", "hidden": 48, "bias": True},
               "attention": {"name": "gqa", "n_kv_heads": 2, "out_bias": True},
               "positional": {"name": "rope", "theta": 500000.0, "scaling": "llama3",
                              "factor": 8.0, "original_context": 16}}, {"qkv_bias": True}, []),
    "mistral": ({"attention": {"name": "gqa", "n_kv_heads": 2, "out_bias": False, "window": 5}},
                {}, []),
    "qwen2": ({"weight_tying": "tied"}, {"qkv_bias": True},
              [{"last": 1, "components": {"attention": {"window": 6}}}]),
    "qwen3": ({"attention": {"name": "gqa", "n_kv_heads": 2, "out_bias": False, "qk_norm": True,
                             "head_dim": 12}}, {},
              [{"every": 2, "offset": 1, "components": {"attention": {"window": 4}}}]),
    "mixtral": ({"ffn": MOE, "attention": {"name": "mha", "out_bias": False, "window": 7}}, {}, []),
    "gemma2": (GEMMA, {"scale_embeddings": True, "logit_softcap": 3.0},
               [{"every": 2, "offset": 0, "components": {"attention": {"window": 5}}}]),
    # Qwen-MoE: a dense layer between MoE layers; Qwen2-MoE's gated shared expert.
    "qwen2_moe": ({"ffn": {**MOE, "router": "softmax_topk", "n_shared": 1, "shared_hidden": 40,
                           "shared_gate": True}}, {"qkv_bias": True, "n_layers": 3}, DENSE_MIDDLE),
    "qwen3_moe": ({"ffn": {**MOE, "router": "softmax_topk_renorm"},
                   "attention": {"name": "gqa", "n_kv_heads": 2, "out_bias": False, "qk_norm": True,
                                 "head_dim": 12}}, {"n_layers": 3}, DENSE_MIDDLE),
}


def family_spec(write_spec, model_type):
    components, model, layers = SPECS[model_type]
    doc = {"name": model_type, "seed": 0, "tokenizer": "bytes", "model": {**TINY, **model},
           "components": {**LLAMA, **components}}
    if layers:
        doc["layers"] = layers
    return explorer.load_spec(write_spec(doc))


def random_model(spec):
    """The spec's model with every weight moved well off its initialisation."""
    return randomize(explorer.build_model(spec))


@pytest.mark.parametrize("model_type", SPECS)
def test_exported_weights_give_transformers_the_same_logits(write_spec, tmp_path, model_type):
    """explorer -> transformers (from_pretrained) -> explorer: the logits equal to 1e-4 both
    ways, the model_type is the one the spec calls for, and the weights come back bit for bit."""
    spec = family_spec(write_spec, model_type)
    ours = random_model(spec)
    export_hf(ours, spec, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == model_type
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager")
    ids = tokens(2, 30)  # past every window
    assert_same_logits(ours, hf.eval(), ids)
    back = explorer.load_model(spec, tmp_path)  # config.json checked against the spec
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(),
                                                 ours.state_dict().values()))
    # ... and the folder alone, config.json read as a spec, is the same model.
    alone = explorer.load_model(explorer.spec_from_hf(tmp_path), tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(alone(ids), ours(ids), atol=1e-5, rtol=0)


def test_large_exports_are_sharded_as_transformers_shards(write_spec, tmp_path):
    spec = family_spec(write_spec, "mixtral")
    tmp_path = tmp_path / "out"
    ours = random_model(spec)
    files = export_hf(ours, spec, tmp_path, max_shard_bytes=40_000)
    shards = sorted(f for f in os.listdir(tmp_path) if f.startswith("model-"))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["total_size"] == sum(p.numel() * 4 for p in ours.parameters())
    assert files[-1].endswith("model.safetensors.index.json")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager")
    assert_same_logits(ours, hf.eval(), tokens(1, 12))
    back = explorer.load_model(spec, tmp_path)  # explorer reads the shards too
    assert torch.equal(back.trf_blocks[1].ff.experts[3].proj.weight,
                       ours.trf_blocks[1].ff.experts[3].proj.weight)
    # A smaller export into the same folder replaces the shards: none is left to shadow it.
    export_hf(ours, spec, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]


@pytest.mark.parametrize("model_type", ["mixtral", "qwen2_moe", "qwen3_moe"])
def test_transformers_5_fused_experts_load(write_spec, tmp_path, model_type):
    """transformers 5 holds Mixtral's and Qwen-MoE's experts stacked (mlp.experts.gate_up_proj);
    a file of its state_dict loads like the per-expert names save_pretrained writes."""
    spec = family_spec(write_spec, model_type)
    ours = random_model(spec)
    export_hf(ours, spec, tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    fused = tmp_path / "fused"
    fused.mkdir()
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}
    assert "model.layers.0.mlp.experts.gate_up_proj" in state
    save_file(state, fused / "model.safetensors")
    back = explorer.load_model(spec, fused)
    assert all(torch.equal(a, b) for a, b in zip(back.parameters(), ours.parameters()))


# -- config.json against the spec --------------------------------------------------------------

@pytest.mark.parametrize("model_type, override, message", [
    ("llama", "components.norm.eps=1e-6", "config.json has rms_norm_eps: 1e-05 but the spec has "
                                          "components.norm.eps: 1e-06; set components.norm.eps: "
                                          "1e-05"),
    ("llama", "components.positional.theta=10000", "config.json has rope_theta: 500000.0 but "
                                                   "the spec has components.positional.theta: "
                                                   "10000.0; set components.positional.theta: "
                                                   "500000.0"),
    ("llama", "components.activation=gelu", "config.json has hidden_act: silu but the spec has "
                                            "components.activation: gelu; set "
                                            "components.activation: silu"),
    ("mistral", "components.attention.window=3", "config.json has sliding_window: 5 but the "
                                                 "spec has components.attention.window: 3"),
    ("mixtral", "components.ffn.top_k=1", "config.json has num_experts_per_tok: 2 but the spec "
                                          "has components.ffn.top_k: 1"),
    ("llama", "components.positional.factor=4", "config.json has components.positional.factor: "
                                                "8.0 but the spec has "
                                                "components.positional.factor: 4.0"),
    # 8 heads of 4 and 4 KV heads: the same tensor shapes as 4 heads of 8 and 2 KV heads.
    ("llama", "model.n_heads=8;components.attention.n_kv_heads=4",
     "config.json has num_attention_heads: 4 but the spec has model.n_heads: 8; set "
     "model.n_heads: 4"),
])
def test_config_json_disagreeing_with_the_spec_is_one_line(write_spec, tmp_path, capsys,
                                                           model_type, override, message):
    spec = family_spec(write_spec, model_type)
    export_hf(random_model(spec), spec, tmp_path)
    sets = [arg for o in override.split(";") for arg in ("--set", o)]
    with pytest.raises(SystemExit) as info:
        main(["build", spec.source, "--weights", str(tmp_path), *sets, "--only", "params"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1, err
    assert f"{tmp_path}/model.safetensors: {message}" in err


def test_layers_that_disagree_are_named(write_spec, tmp_path):
    spec = family_spec(write_spec, "qwen3")
    export_hf(random_model(spec), spec, tmp_path)
    uniform = explorer.load_spec(spec.source, overrides=["layers=[]"])
    with pytest.raises(explorer.ExplorerError, match=r"config.json has components.attention.window "
                                                     r"at layer 1: 4; the spec has 0 there"):
        explorer.load_model(uniform, tmp_path)


# -- what the family cannot hold ---------------------------------------------------------------

@pytest.mark.parametrize("model_type, override, reason", [
    ("llama", "components.norm=layernorm", "components.norm is layernorm; the Llama family has "
                                           "only rmsnorm"),
    ("llama", "model.qkv_bias=false", "components.attention.out_bias is true with "
                                      "model.qkv_bias false"),
    ("mistral", "components.attention.out_bias=true", "components.attention.out_bias is true "
                                                      "with model.qkv_bias false"),
    ("mixtral", "components.ffn.n_shared=1", "components.ffn.n_shared is 1; Mixtral has only 0"),
    ("mixtral", "components.ffn.router=softmax_topk", "components.ffn.router is softmax_topk; "
                                                      "Mixtral routes with"),
    ("mistral", "layers=[{first: 1, components: {attention: {window: 0}}}]",
     "layers windows some layers only; Mistral's config windows every layer or none"),
    ("qwen3", "layers=[{first: 1, components: {ffn: {name: glu, hidden: 8}}}]",
     "layers sets components.ffn at layer 0 apart from the window"),
    ("mixtral", "layers=[{first: 1, components: {ffn: {name: glu, hidden: 8}}}]",
     "layers sets components.ffn at layer 0 apart from the window"),
    ("qwen2_moe", "components.ffn.n_shared=2", "components.ffn.n_shared is 2; Qwen2-MoE has "
                                               "exactly one shared expert, gated"),
    ("qwen2_moe", "components.ffn.shared_gate=false", "components.ffn.shared_gate is false with "
                                                      "q/k/v biases and no output bias"),
    ("qwen2_moe", "components.attention.out_bias=true", "components.attention.out_bias is true; "
                                                        "Qwen2-MoE biases q, k and v only"),
    ("qwen2_moe", "layers=[{layers: [0], components: {attention: {window: 4}}}]",
     "layers sets a sliding window; explorer writes Qwen2-MoE without one"),
    ("qwen3_moe", "components.ffn.n_shared=1", "components.ffn.n_shared is 1; Qwen3-MoE has "
                                               "only 0"),
    ("qwen3_moe", "components.ffn.router=sigmoid_topk", "components.ffn.router is sigmoid_topk; "
                                                        "Qwen3-MoE routes with softmax_topk or"),
    ("qwen3_moe", "layers=[{layers: [1], components: {ffn: {name: glu, hidden: 48, bias: true}}}]",
     "layers sets a glu with biases at layer 1; Qwen3-MoE's dense layers have none"),
    ("qwen3_moe", "layers=[{layers: [0], components: {ffn: {name: glu, hidden: 40}}}, "
                  "{layers: [1], components: {ffn: {name: glu, hidden: 48}}}]",
     "layers sets dense glu layers of 2 kinds; config.json has one intermediate_size"),
    ("qwen3_moe", "layers=[{every: 1, components: {ffn: {name: glu, hidden: 48}}}]",
     "layers makes every layer a dense glu; write components.ffn: glu"),
    ("gemma2", "components.residual=pre_norm", "components.residual is not sandwich; of the "
                                               "Llama family only Gemma 2"),
    ("llama", "components.attention.softcap=2.0", "components.residual is not sandwich"),
])
def test_export_refuses_what_the_family_cannot_hold(write_spec, tmp_path, capsys, model_type,
                                                    override, reason):
    spec = family_spec(write_spec, model_type)
    with pytest.raises(SystemExit) as info:
        main(["export", spec.source, "--set", override, "--to", "hf", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1, err
    assert f"Hugging Face Llama family: {reason}" in err
    assert not (tmp_path / "out").exists()


def test_loading_into_a_spec_the_family_cannot_hold(write_spec, tmp_path):
    spec = family_spec(write_spec, "llama")
    export_hf(random_model(spec), spec, tmp_path)
    other = explorer.load_spec(spec.source, overrides=["components.residual=post_norm"])
    with pytest.raises(explorer.ExplorerError, match="cannot load a Hugging Face Llama family "
                                                     "checkpoint into this spec: components.residual"):
        explorer.load_model(other, tmp_path)


def test_cli_export_then_build(write_spec, tmp_path, capsys):
    spec = family_spec(write_spec, "qwen2")
    with pytest.raises(SystemExit) as info:
        main(["export", spec.source, "--to", "hf", str(tmp_path), "--max-shard-size", "20kB"])
    out = capsys.readouterr().out
    shards = [line for line in out.splitlines() if "-of-" in line]
    assert info.value.code == 0 and "config.json" in out and len(shards) > 3
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"]
    for line in shards:  # at most 20 kB of tensors, or one larger tensor alone
        path = line.split()[-1]
        alone = list(index.values()).count(os.path.basename(path)) == 1
        assert alone or os.path.getsize(path) < 20_000 + 2_000  # + the header
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(hf).__name__ == "Qwen2ForCausalLM"
    assert hf.model.layers[0].self_attn.q_proj.bias is not None
    assert hf.model.layers[0].self_attn.o_proj.bias is None
    assert hf.config.tie_word_embeddings and hf.config.layer_types == [
        "full_attention", "sliding_attention"]
    with pytest.raises(SystemExit) as info:
        main(["build", str(tmp_path), "--weights", str(tmp_path), "--only", "params"])
    assert info.value.code == 0


@pytest.mark.parametrize("size", ["lots", "GB", "0"])
def test_bad_shard_size_is_one_line(write_spec, tmp_path, capsys, size):
    spec = family_spec(write_spec, "llama")
    with pytest.raises(SystemExit) as info:
        main(["export", spec.source, "--to", "hf", str(tmp_path / "out"), "--max-shard-size", size])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith("Error: --max-shard-size: ")
    assert not (tmp_path / "out").exists()


def test_a_derived_hidden_size_exports_and_loads_back(tmp_path, capsys):
    """specs/llama_style.yaml writes ffn hidden: 0, Llama's rule (256 at width 64): config.json
    says intermediate_size: 256, and build and generate read the export back into the same spec,
    generating transformers' greedy tokens."""
    spec = str(ROOT / "specs" / "llama_style.yaml")
    shrink = ["--set", "model.n_layers=1", "--set", "model.emb_dim=64", "--set", "model.n_heads=4"]
    code, _, err = run_cli(capsys, "export", spec, *shrink, "--to", "hf", tmp_path)
    assert code == 0, err
    assert json.loads((tmp_path / "config.json").read_text())["intermediate_size"] == 256
    code, _, err = run_cli(capsys, "build", spec, *shrink, "--weights", tmp_path, "--only",
                           "samples", "--format", "json")
    assert code == 0, err
    code, out, err = run_cli(capsys, "generate", spec, *shrink, "--weights", tmp_path,
                             "--prompt", "Hello", "--max-new-tokens", "4", "--format", "json")
    assert code == 0, err
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    prompt = torch.tensor([json.loads(out)["token_ids"][:1]])  # "Hello" is one GPT-2 token
    want = hf.generate(prompt, max_new_tokens=4, do_sample=False)[0].tolist()
    assert json.loads(out)["token_ids"] == want


@pytest.mark.parametrize("model_type, override", [
    ("llama", "components.ffn.hidden=0"),  # derived: Llama's rule, 256 at width 32
    ("llama", "components.attention.head_dim=8"),  # written, though emb_dim / n_heads is 8
    ("gemma2", "components.attention.query_pre_attn_scalar=0"),  # derived: the head size, 12
])
def test_a_value_derived_in_one_place_and_written_in_the_other_loads(write_spec, tmp_path,
                                                                      model_type, override):
    """config.json and the spec are compared as the built model has each value, so a value
    the spec derives and the export writes out (or the converter leaves to its default) agrees."""
    spec = explorer.load_spec(family_spec(write_spec, model_type).source, overrides=[override])
    model = random_model(spec)
    export_hf(model, spec, tmp_path)
    ids = tokens(2, 12)
    with torch.no_grad():
        torch.testing.assert_close(explorer.load_model(spec, tmp_path).eval()(ids),
                                   model(ids), atol=1e-5, rtol=0)
