"""Per-layer layouts (``layers:``): selectors and their validation, resolution, building,
generation with and without the KV cache, checkpoints, extends, the report, and Hugging Face's
Qwen3 with alternating sliding-window and full layers."""

import json

import pytest
import torch

import explorer
from explorer.cli import main
from explorer.model.generation import generate
from explorer.spec.layers import index_text
from explorer.spec.loading import spec_from_dict
from tests.helpers.hf_reference import (assert_same_logits, build_spec, from_llama_like, load_exactly,
                          randomize, tokens, transformers)

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = {"vocab_size": 256, "context_length": 32, "emb_dim": 16, "n_heads": 4, "n_layers": 4,
         "drop_rate": 0.0}
COMPONENTS = {"norm": "rmsnorm", "activation": "silu",
              "ffn": {"name": "moe", "n_experts": 4, "top_k": 2, "n_shared": 1, "hidden": 8},
              "attention": {"name": "gqa", "n_kv_heads": 2, "out_bias": False},
              "positional": "rope"}
# Gemma-style local/global, NoPE on the last of every 4, a dense first layer (DeepSeek).
LAYOUT = [{"every": 2, "offset": 1, "components": {"attention": {"window": 4}}},
          {"every": 4, "offset": 3, "components": {"positional": "none"}},
          {"first": 1, "components": {"ffn": {"name": "glu", "hidden": 24}}}]


def doc(layers=LAYOUT, **model):
    return {"name": "layout", "seed": 123, "tokenizer": "bytes", "model": {**MODEL, **model},
            "components": COMPONENTS, "layers": layers}


@pytest.fixture
def layout(write_spec):
    return explorer.load_spec(write_spec(doc()))


def attentions(model):
    return [block.att for block in model.trf_blocks]


# -- resolution and building ---------------------------------------------------------------------

def test_each_layer_gets_its_entries_choices(layout):
    got = [(c["ffn"].name, c["attention"].params["window"], c["positional"].name)
           for c in layout.layer_components()]
    assert got == [("glu", 0, "rope"), ("moe", 4, "rope"), ("moe", 0, "rope"), ("moe", 4, "none")]
    # Parameters alone merge over the spec-wide choice; a new name starts from its defaults.
    assert layout.components_at(1)["attention"].params["n_kv_heads"] == 2
    assert layout.components_at(0)["ffn"].params == {"hidden": 24, "multiple_of": 256,
                                                     "bias": False}


def test_a_later_entry_overrides_an_earlier_one_for_the_same_layer_and_kind(write_spec):
    spec = explorer.load_spec(write_spec(doc([
        {"every": 2, "offset": 1, "components": {"attention": {"window": 4}}},
        {"layers": [3], "components": {"attention": {"qk_norm": True}}}])))
    windows = [(c["attention"].params["window"], c["attention"].params["qk_norm"])
               for c in spec.layer_components()]
    # Layer 3's attention is the second entry's, whole: the spec-wide window 0 with qk_norm.
    assert windows == [(0, False), (4, False), (0, False), (0, True)]


@pytest.mark.parametrize("entry, selected", [
    ({"every": 3}, [0, 3]), ({"every": 3, "offset": 2}, [2]), ({"first": 2}, [0, 1]),
    ({"last": 3}, [1, 2, 3]), ({"layers": [3, 0]}, [0, 3]),
])
def test_selectors(write_spec, entry, selected):
    spec = explorer.load_spec(write_spec(doc([{**entry, "components": {"norm": "layernorm"}}])))
    assert [i for i, c in enumerate(spec.layer_components()) if c["norm"].name == "layernorm"] \
        == selected


def test_the_model_builds_each_block_from_its_layer(layout):
    model = explorer.build_model(layout)
    assert [a.window for a in attentions(model)] == [0, 4, 0, 4]
    assert [type(b.ff).__name__ for b in model.trf_blocks] == ["GLU", *["MixtureOfExperts"] * 3]
    assert [type(model.positional_at(i)).__name__ for i in range(4)] == [
        "RotaryPositional"] * 3 + ["NoPositional"]
    assert model.positional_at(0) is model.pos_emb  # the spec-wide encoding, embed and all
    # Parameters by hand: a glu of 24 is 3 * 16 * 24; an MoE of 4 experts of 8 and one shared
    # is 16 * 4 (router) + 5 * 3 * 16 * 8; each block has 2 rmsnorms of 16 and a gqa of
    # 2 * 16 * 16 + 2 * 16 * 8.
    attention, norms = 2 * 16 * 16 + 2 * 16 * 8, 2 * 16
    blocks = [sum(p.numel() for p in b.parameters()) for b in model.trf_blocks]
    assert blocks == [attention + norms + 3 * 16 * 24] + [attention + norms + 64 + 5 * 384] * 3


def test_a_spec_without_layers_has_no_per_layer_encodings(make_spec):
    model = explorer.build_model(make_spec(positional="rope"))
    assert model.layer_pos is None and "layer_pos" not in dict(model.named_children())


def test_layers_on_the_same_choice_share_one_encoding(write_spec):
    spec = explorer.load_spec(write_spec(doc([{"layers": [1, 3], "components": {
        "positional": "alibi"}}])))
    model = explorer.build_model(spec)
    assert len(model.layer_pos) == 1
    assert model.positional_at(1) is model.positional_at(3) is model.layer_pos[0]


@pytest.mark.parametrize("layers", [LAYOUT, [
    {"every": 2, "components": {"attention": {"name": "mla", "kv_lora_rank": 8,
                                              "qk_nope_head_dim": 4, "qk_rope_head_dim": 4,
                                              "v_head_dim": 4, "window": 5}}},
    {"last": 1, "components": {"positional": "none", "attention": {"impl": "manual"}}}]])
def test_cached_generation_gives_the_same_tokens(write_spec, layers):
    """Windows of 4 and 5 on a 12-token prompt plus 16 new tokens: the ring caches wrap."""
    model = explorer.build_model(explorer.load_spec(write_spec(doc(layers)))).eval()
    prompt = tokens(2, 12)
    cached = generate(model, prompt, max_new_tokens=16)
    assert torch.equal(cached, generate(model, prompt, max_new_tokens=16, use_cache=False))


def test_an_entry_for_every_layer_is_the_spec_wide_choice(layout, write_spec):
    """Windows of 2 on all 4 layers, by an entry or spec-wide: the same weights and logits, and
    position 7 no longer sees token 0 (4 layers reach back 4 positions)."""
    by_entry = explorer.load_spec(write_spec(doc([
        {"every": 1, "components": {"attention": {"window": 2}}}])))
    spec_wide = explorer.load_spec(layout.source, overrides=["components.attention.window=2",
                                                             "layers=[]"])
    assert spec_wide.layers == ()
    a, b = (explorer.build_model(s).eval() for s in (by_entry, spec_wide))
    ids = tokens(1, 8)
    other = ids.clone()
    other[0, 0] = (ids[0, 0] + 1) % 256
    with torch.no_grad():
        assert torch.equal(a(ids), b(ids))
        torch.testing.assert_close(a(ids)[0, 7], a(other)[0, 7])
        assert not torch.allclose(a(ids)[0, 3], a(other)[0, 3])


# -- the spec: round trip, extends, --set, checkpoints -------------------------------------------

def test_to_dict_round_trips_layers(layout):
    again = spec_from_dict(layout.to_dict())
    assert again.layer_components() == layout.layer_components()
    assert again.to_dict() == layout.to_dict()
    assert layout.to_dict()["layers"][0] == {"every": 2, "offset": 1, "components": {
        "attention": {**layout.components["attention"].params, "name": "gqa", "window": 4}}}


def test_specs_without_layers_keep_their_documents(make_spec):
    assert "layers" not in make_spec().to_dict()


def test_extends_replaces_the_base_layers_list(write_spec):
    base = write_spec(doc(), name="base.yaml")
    child = write_spec({"extends": base.name, "layers": [
        {"last": 2, "components": {"residual": "sandwich"}}]}, name="child.yaml")
    inherit = write_spec({"extends": base.name, "name": "child2"}, name="child2.yaml")
    spec = explorer.load_spec(child)
    assert [c["residual"].name for c in spec.layer_components()] == ["pre_norm"] * 2 + [
        "sandwich"] * 2
    assert {c["attention"].params["window"] for c in spec.layer_components()} == {0}
    assert explorer.load_spec(inherit).layer_components() == explorer.load_spec(
        base).layer_components()


def test_set_gives_a_whole_layers_list(layout):
    spec = explorer.load_spec(layout.source, overrides=[
        "layers=[{first: 1, components: {attention: {window: 3}}}]"])
    assert [c["attention"].params["window"] for c in spec.layer_components()] == [3, 0, 0, 0]


def test_checkpoints_carry_layers(layout, tmp_path):
    model = explorer.build_model(layout).eval()
    path = explorer.save_checkpoint(model, layout, tmp_path / "layout.safetensors")
    spec = explorer.spec_from_checkpoint(path)
    assert spec.layer_components() == layout.layer_components()
    loaded = explorer.load_model(spec, path, seed=0).eval()
    ids = tokens(1, 9)
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))


def test_a_checkpoint_refuses_a_spec_whose_layers_differ(layout, tmp_path, write_spec):
    model = explorer.build_model(layout)
    path = explorer.save_checkpoint(model, layout, tmp_path / "l.safetensors")
    # Same tensors (windows and NoPE hold no weights), other layers: the saved spec says so.
    other = explorer.load_spec(layout.source, overrides=[
        "layers=[{first: 1, components: {ffn: {name: glu, hidden: 24}}}]"])
    with pytest.raises(explorer.ExplorerError, match=r"was saved with layers: \[\{\"every\": 2, "
                       r".* but the spec has \[\{\"first\": 1.*; set layers: \[\{\"every\": 2"):
        explorer.load_model(other, path)
    # impl only picks how the same function is computed: it may differ.
    manual = [{**LAYOUT[0], "components": {"attention": {"window": 4, "impl": "manual"}}},
              *LAYOUT[1:]]
    explorer.load_model(explorer.load_spec(write_spec(doc(manual))), path)


def test_gpt2_export_refuses_layers(write_spec, tmp_path):
    spec = explorer.load_spec(write_spec({
        "name": "g", "tokenizer": "bytes", "model": MODEL,
        "layers": [{"every": 2, "components": {"attention": {"window": 4}}}]}))
    model = explorer.build_model(spec)
    with pytest.raises(explorer.ExplorerError, match=r"layers sets components per layer; "
                       r"GPT-2's blocks are all alike"):
        explorer.export_hf(model, spec, tmp_path / "out")


# -- validation: one line naming the entry's key ---------------------------------------------------

@pytest.mark.parametrize("layers, message", [
    ({"every": 2}, r"layers: expected a list of entries, got \{'every': 2\}; e\.g\. layers: "),
    (["every"], r"layers\[0\]: expected a mapping, got 'every'$"),
    ([{"evry": 2, "components": {}}], r"layers\[0\]\.evry: unknown key; did you mean 'every'\? "
                                      r"valid keys: every, offset, first, last, layers, components$"),
    ([{"components": {"norm": "layernorm"}}], r"layers\[0\]: no layer selector; give exactly one "
                                              r"of every \(with offset\), first, last, layers$"),
    ([{"first": 1, "components": {}}, {"every": 2, "first": 1, "components": {}}],
     r"layers\[1\]\.first: given together with every; give exactly one of"),
    ([{"every": 2, "offset": 2, "components": {}}],
     r"layers\[0\]\.offset: must be < every \(2\), got 2; 0\.\.1: the layers i with i % 2 == offset$"),
    ([{"every": 8, "offset": 5, "components": {}}],
     r"layers\[0\]\.offset: selects no layer: offset 5 is past the last layer 3 \(model\.n_layers 4\)$"),
    ([{"every": 2, "offset": -1, "components": {}}], r"layers\[0\]\.offset: must be >= 0, got -1$"),
    ([{"first": 1, "offset": 0, "components": {}}],
     r"layers\[0\]\.offset: only with every, not with first"),
    ([{"every": 0, "components": {}}], r"layers\[0\]\.every: must be >= 1, got 0$"),
    ([{"every": "2", "components": {}}], r"layers\[0\]\.every: expected an integer, got '2'"),
    ([{"first": 5, "components": {}}], r"layers\[0\]\.first: must be <= 4, got 5$"),
    ([{"last": 0, "components": {}}], r"layers\[0\]\.last: must be >= 1, got 0$"),
    ([{"layers": [1, 4], "components": {}}], r"layers\[0\]\.layers: 4 is not a layer index; "
                                             r"layer indices 0\.\.3 \(model\.n_layers 4\), each once$"),
    ([{"layers": [1, 1], "components": {}}], r"layers\[0\]\.layers: layer 1 is listed twice;"),
    ([{"layers": [], "components": {}}], r"layers\[0\]\.layers: expected a non-empty list of "
                                         r"layer indices, got \[\];"),
    ([{"layers": [-1], "components": {}}], r"layers\[0\]\.layers: -1 is not a layer index;"),
    ([{"first": 1}], r"layers\[0\]\.components: missing; the kinds this entry overrides: norm, "
                     r"activation, ffn, attention, positional, residual$"),
    ([{"first": 1, "components": ["ffn"]}], r"layers\[0\]\.components: expected a mapping"),
    ([{"first": 1, "components": {"weight_tying": "tied"}}],
     r"layers\[0\]\.components\.weight_tying: weight_tying is model-wide, not per layer; set "
     r"components\.weight_tying; per layer: norm, activation"),
    ([{"first": 1, "components": {"atention": {}}}],
     r"layers\[0\]\.components\.atention: unknown key; did you mean 'attention'\?"),
    ([{"first": 1, "components": {"ffn": "mpl"}}],
     r"layers\[0\]\.components\.ffn: unknown ffn component 'mpl'; did you mean 'mlp'\? "
     r"registered: "),
    ([{"first": 1, "components": {"attention": {"window": -1}}}],
     r"layers\[0\]\.components\.attention\.window: must be >= 0, got -1$"),
    ([{"first": 1, "components": {"attention": {"windw": 4}}}],
     r"layers\[0\]\.components\.attention\.windw: unknown parameter of attention 'gqa'; did you "
     r"mean 'window'\?"),
    ([{"first": 1, "components": {"attention": {"n_kv_heads": 3}}}],
     r"layers\[0\]\.components\.attention\.n_kv_heads: 3 key/value heads cannot be shared by "
     r"n_heads 4 query heads; a divisor of n_heads: 1, 2, 4$"),
    ([{"first": 1, "components": {"ffn": {"name": "moe", "top_k": 5}}}],
     r"layers\[0\]\.components\.ffn\.top_k: must be in 1\.\.n_experts \(4\), got 5"),
    ([{"last": 1, "components": {"positional": "learned"}}],
     r"layers\[0\]\.components\.positional: learned acts on the whole model \(the token "
     r"embeddings\), not inside a block; per layer: alibi, none, rope; or set it in "
     r"components\.positional$"),
    ([{"layers": [2], "components": {"attention": {"head_dim": 5}}}],
     r"components\.positional: at layer 2: rope rotates pairs of dimensions, but the head size "
     r"is odd: the attention's head_dim = 5; choose an even components\.attention\.head_dim$"),
])
def test_bad_layers_are_one_line_spec_errors(write_spec, layers, message):
    path = write_spec(doc(layers))
    with pytest.raises(explorer.SpecError) as info:
        explorer.load_spec(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: ")
    assert __import__("re").search(message, text), text


def test_the_cli_prints_one_line_and_exits_2(write_spec, capsys):
    path = write_spec(doc([{"every": 2, "first": 1, "components": {}}]))
    with pytest.raises(SystemExit) as info:
        main(["build", str(path), "--only", "params"])
    out, err = capsys.readouterr()
    assert info.value.code == 2 and out == ""
    assert err == f"Error: {path}: layers[0].first: given together with every; give exactly " \
                  "one of every (with offset), first, last, layers\n"


def test_an_error_in_set_layers_names_set(layout):
    with pytest.raises(explorer.SpecError, match=r"^--set layers: layers\[0\]\.first: must be "
                                                 r"<= 4, got 9$"):
        explorer.load_spec(layout.source, overrides=["layers=[{first: 9, components: {}}]"])


def test_a_base_spec_error_names_the_file_that_wrote_layers(write_spec):
    base = write_spec(doc([{"last": 7, "components": {}}]), name="base.yaml")
    child = write_spec({"extends": base.name, "name": "c"}, name="child.yaml")
    with pytest.raises(explorer.SpecError, match=rf"^{base}: layers\[0\]\.last: must be <= 4"):
        explorer.load_spec(child)


# -- the report ------------------------------------------------------------------------------------

def test_index_text():
    assert index_text(range(12)) == "0-11"
    assert index_text(range(1, 24, 2)) == "1,3,5,..,23"
    assert index_text([0, 1, 2, 4, 5, 6, 8]) == "0-2,4-6,8"
    assert index_text([3, 7, 11]) == "3,7,11"


def test_build_shows_the_pattern_and_json_has_every_layer(layout, capsys):
    with pytest.raises(SystemExit) as info:
        main(["build", layout.source, "--only", "params"])
    out, _ = capsys.readouterr()
    assert info.value.code == 0
    assert ("layers: 4, differing in:\n"
            "  ffn         0 (1)    glu\n"
            "              1-3 (3)  moe\n"
            "  attention   0,2 (2)  gqa window=0\n"
            "              1,3 (2)  gqa window=4\n"
            "  positional  0-2 (3)  rope\n"
            "              3 (1)    none\n") in out
    with pytest.raises(SystemExit):
        main(["build", layout.source, "--only", "params", "--format", "json"])
    report = json.loads(capsys.readouterr()[0])
    assert [layer["attention"]["params"]["window"] for layer in report["layers"]] == [0, 4, 0, 4]
    assert report["layers"][3]["positional"] == {"name": "none", "params": {}}
    assert report["spec"]["layers"] == layout.to_dict()["layers"]


# -- Hugging Face's Qwen3 with alternating sliding-window and full layers --------------------------

def test_alternating_windows_equal_qwen3_layer_types(write_spec):
    config = transformers.Qwen3Config(
        vocab_size=256, hidden_size=32, intermediate_size=40, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
        use_sliding_window=True, sliding_window=4,
        layer_types=["full_attention", "sliding_attention"] * 2, attn_implementation="eager")
    torch.manual_seed(0)
    hf = randomize(transformers.Qwen3ForCausalLM(config))
    components = {"norm": {"name": "rmsnorm", "eps": 1e-6}, "activation": "silu",
                  "ffn": {"name": "glu", "hidden": 40},
                  "attention": {"name": "gqa", "n_kv_heads": 2, "qk_norm": True, "out_bias": False},
                  "positional": "rope"}
    spec = build_spec(write_spec, components, n_layers=4)
    windowed = explorer.load_spec(spec.source, overrides=[
        "layers=[{every: 2, offset: 1, components: {attention: {window: 4}}}]"])
    weights = from_llama_like(hf, qk_norm=True)
    ids = tokens(2, 20)
    ours = load_exactly(explorer.build_model(windowed), weights)
    assert_same_logits(ours, hf, ids)
    everywhere = load_exactly(explorer.build_model(spec), weights)  # no windows: not Qwen3's
    with torch.no_grad():
        assert not torch.allclose(everywhere(ids), hf(ids).logits, atol=1e-2)


def test_compare_shows_layer_patterns_not_entries(layout):
    from explorer.analysis.comparison import spec_differences

    dense = explorer.load_spec(layout.source, overrides=["layers=[]"])
    differences = spec_differences([layout.to_dict(), dense.to_dict()])
    assert differences["layers.attention"] == ["0,2 gqa window=0; 1,3 gqa window=4", None]
    assert differences["layers.ffn"] == ["0 glu; 1-3 moe", None]
    assert "layers" not in differences


def test_the_local_global_ablation_windows_odd_layers_and_shrinks_the_kv_cache():
    """gpt2-small: 12 layers x 2 x 768 values per token; at 1,024 tokens the 6 windowed layers
    cache 256: bf16 2 bytes * 1,536 * (6 * 1,024 + 6 * 256) = 23,592,960 bytes."""
    spec = explorer.load_spec("specs/ablations/local_global.yaml")
    assert [c["attention"].params["window"] for c in spec.layer_components()] == [0, 256] * 6
    kv = explorer.analyze(spec, only=["memory"])["analyses"]["memory"]["kv_cache"]
    assert kv["bytes_per_token"]["bf16"] == 36_864  # as gpt2-small: every layer caches each token
    assert kv["bytes_full_context"]["bf16"] == 2 * 1536 * (6 * 1024 + 6 * 256) == 23_592_960
