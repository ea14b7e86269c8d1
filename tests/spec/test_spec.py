"""Spec loading: the format, extends, overrides, and one clear line for every kind of bad input."""

import pytest
import yaml

import explorer
from explorer import SpecError

from tests.helpers import ROOT, TINY_MODEL, TINY_TOKENIZER


def base_doc(**changes):
    doc = {"name": "t", "tokenizer": TINY_TOKENIZER, "model": dict(TINY_MODEL),
           "components": {"norm": "layernorm"}}
    doc.update(changes)
    return doc


def test_gpt2_small_resolves_to_the_books_config():
    spec = explorer.load_spec("specs/gpt2_small.yaml")
    m = spec.model
    assert (m.vocab_size, m.context_length, m.emb_dim, m.n_heads, m.n_layers, m.qkv_bias) == (
        50257, 1024, 768, 12, 12, False)
    assert (m.dropout.embedding, m.dropout.attention, m.dropout.residual) == (0.1, 0.1, 0.1)
    assert spec.seed == 123 and spec.tokenizer == "gpt2"
    assert {k: c.name for k, c in spec.components.items()} == {
        "norm": "layernorm", "activation": "gelu_tanh", "ffn": "mlp", "attention": "mha",
        "positional": "learned", "residual": "pre_norm", "weight_tying": "none"}
    assert spec.components["norm"].params["eps"] == 1e-5


def test_component_with_parameters_and_yaml11_float(write_spec):
    # PyYAML reads "1e-6" as a string (YAML 1.1); a float parameter accepts it.
    path = write_spec("name: t\nmodel: {vocab_size: 50257, context_length: 32, emb_dim: 16, "
                      "n_heads: 4, n_layers: 2}\ncomponents:\n  norm: {name: layernorm, eps: 1e-6}\n")
    assert explorer.load_spec(path).components["norm"].params["eps"] == 1e-6


def test_extends_overrides_only_what_it_names(write_spec):
    base = write_spec(base_doc(seed=7), name="base.yaml")
    child = write_spec({"extends": base.name, "name": "child",
                        "components": {"weight_tying": "tied"}, "model": {"n_layers": 3}})
    spec = explorer.load_spec(child)
    assert spec.name == "child" and spec.seed == 7
    assert spec.model.n_layers == 3 and spec.model.emb_dim == 16
    assert spec.components["weight_tying"].name == "tied"
    assert spec.components["norm"].name == "layernorm"


def test_three_line_ablation_of_gpt2_small(write_spec, tmp_path):
    import shutil
    shutil.copy(ROOT / "specs/gpt2_small.yaml", tmp_path / "gpt2_small.yaml")
    path = write_spec("extends: gpt2_small.yaml\nname: gpt2-small-tied\ncomponents:\n  weight_tying: tied\n")
    spec = explorer.load_spec(path)
    assert spec.components["weight_tying"].name == "tied" and spec.model.emb_dim == 768


def test_child_params_merge_with_same_component_but_reset_on_rename(write_spec):
    base = write_spec(base_doc(components={"norm": {"name": "layernorm", "eps": 0.001}}), name="b.yaml")
    same = write_spec({"extends": "b.yaml", "components": {"norm": {"name": "layernorm"}}})
    assert explorer.load_spec(same).components["norm"].params["eps"] == 0.001


def test_drop_rate_is_shorthand_and_dropout_sets_each_place(write_spec):
    spec = explorer.load_spec(write_spec(base_doc()))
    assert spec.model.dropout == explorer.Dropout(0.0, 0.0, 0.0)
    model = {**TINY_MODEL}
    del model["drop_rate"]
    model["dropout"] = {"embedding": 0.1, "attention": 0.2}
    spec = explorer.load_spec(write_spec(base_doc(model=model)))
    assert spec.model.dropout == explorer.Dropout(0.1, 0.2, 0.0)
    base = write_spec(base_doc(), name="b.yaml")
    child = write_spec({"extends": "b.yaml", "model": {"dropout": {"attention": 0.3}}})
    assert explorer.load_spec(child).model.dropout == explorer.Dropout(0.0, 0.3, 0.0)


def test_set_overrides(write_spec):
    path = write_spec(base_doc())
    spec = explorer.load_spec(path, overrides=[
        "model.n_layers=5", "components.norm.eps=0.01", "components.weight_tying=tied",
        "model.drop_rate=0.2", "seed=9"])
    assert spec.model.n_layers == 5 and spec.seed == 9
    assert spec.components["norm"].params["eps"] == 0.01
    assert spec.components["weight_tying"].name == "tied"
    assert spec.model.dropout == explorer.Dropout(0.2, 0.2, 0.2)


def test_resolved_spec_round_trips(write_spec):
    spec = explorer.load_spec("specs/gpt2_small_openai.yaml")
    again = explorer.load_spec(write_spec(spec.to_dict()))
    assert again.to_dict() == spec.to_dict()


# -- bad input: one line that names the file, the key and what is valid ------------------------

BAD = [
    # (document text, expected key in message, expected fragment)
    ("", None, "the file is empty"),
    ("- a\n- b\n", None, "not a mapping"),
    ("name: [unclosed\n", "line", "malformed YAML"),
    ("a: !!python/object/apply:os.system ['echo hi']\n", "line", "malformed YAML"),
    ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_head: 4, n_layers: 2}\n",
     "model.n_head", "did you mean 'n_heads'?"),
    ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_heads: four, n_layers: 2}\n",
     "model.n_heads", "expected an integer, got 'four'"),
    ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_heads: 4, n_layers: 0}\n",
     "model.n_layers", "must be >= 1, got 0"),
    ("model: {vocab_size: -5, context_length: 32, emb_dim: 16, n_heads: 4, n_layers: 2}\n",
     "model.vocab_size", "must be >= 1, got -5"),
    ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_heads: 4, n_layers: 2, drop_rate: 1.0}\n",
     "model.dropout.embedding", "must be < 1, got 1.0; a dropout rate in [0, 1)"),
    ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_heads: 4, n_layers: 2, "
     "dropout: {attention: -0.1}}\n", "model.dropout.attention", "must be >= 0, got -0.1"),
    ("model: {vocab_size: 50257, context_length: 32, emb_dim: 18, n_heads: 4, n_layers: 2}\n",
     "model.emb_dim", "emb_dim 18 is not divisible by n_heads 4"),
    ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_heads: 4, n_layers: 2, qkv_bias: maybe}\n",
     "model.qkv_bias", "expected true or false"),
    ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_heads: 4}\n",
     "model.n_layers", "missing"),
    ("name: t\n", "model", "missing"),
    ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_heads: 4, n_layers: 2}\n"
     "components: {norm: layernrom}\n", "components.norm",
     "unknown norm component 'layernrom'; did you mean 'layernorm'? registered: "),
    ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_heads: 4, n_layers: 2}\n"
     "components: {norm: {name: layernorm, epsilon: 0.1}}\n", "components.norm.epsilon",
     "unknown parameter of norm 'layernorm'; did you mean 'eps'? parameters: eps"),
    ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_heads: 4, n_layers: 2}\n"
     "components: {norm: {name: layernorm, eps: small}}\n", "components.norm.eps",
     "expected a number, got 'small'"),
    ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_heads: 4, n_layers: 2}\n"
     "components: {normalisation: layernorm}\n", "components.normalisation", "valid keys: norm, "),
    ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_heads: 4, n_layers: 2}\n"
     "tokenizer: sentencepiece\n", "tokenizer", "unknown tokenizer 'sentencepiece'; registered: bytes, gpt2"),
    ("modle: {}\n", "modle", "did you mean 'model'?"),
    ("extends: missing.yaml\n", "extends", "does not exist"),
]


@pytest.mark.parametrize("text, key, fragment", BAD)
def test_bad_specs_give_one_line_naming_file_and_key(write_spec, text, key, fragment):
    path = write_spec(text, name="bad.yaml")
    with pytest.raises(SpecError) as info:
        explorer.load_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    if key:
        assert f": {key}" in message
    assert fragment in message


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(SpecError, match=r"nope\.yaml: no such file"):
        explorer.load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="is a directory"):
        explorer.load_spec(tmp_path)


def test_unreadable_bytes(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SpecError, match="binary.yaml: cannot read"):
        explorer.load_spec(path)


def test_cyclic_extends(write_spec):
    write_spec({"extends": "b.yaml"}, name="a.yaml")
    b = write_spec({"extends": "a.yaml"}, name="b.yaml")
    with pytest.raises(SpecError, match="extends: cyclic extends: .*b.yaml -> .*a.yaml -> .*b.yaml"):
        explorer.load_spec(b)


def test_error_names_the_file_that_set_the_key(write_spec):
    base = write_spec(base_doc(model={**TINY_MODEL, "n_heads": 3}), name="base.yaml")
    child = write_spec({"extends": "base.yaml", "name": "child"}, name="child.yaml")
    with pytest.raises(SpecError) as info:
        explorer.load_spec(child)
    assert str(info.value).startswith(f"{base}: model.emb_dim: emb_dim 16 is not divisible by n_heads 3")


def test_bad_overrides(write_spec):
    path = write_spec(base_doc())
    with pytest.raises(SpecError, match=r"^--set: model\.n_layers: expected KEY=VALUE"):
        explorer.load_spec(path, overrides=["model.n_layers"])
    # The --set names the key once (it used to read "--set model.n_layers: model.n_layers: ...").
    with pytest.raises(SpecError, match=r"^--set model\.n_layers: must be >= 1, got 0$"):
        explorer.load_spec(path, overrides=["model.n_layers=0"])
    with pytest.raises(SpecError, match="unknown norm component 'nope'"):
        explorer.load_spec(path, overrides=["components.norm=nope"])


def test_safe_load_never_constructs_objects(write_spec, tmp_path):
    marker = tmp_path / "pwned"
    path = write_spec(f"x: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(SpecError):
        explorer.load_spec(path)
    assert not marker.exists()


@pytest.mark.parametrize("text, line", [
    ("name: t\nmodel:\n  emb_dim: [16\n  n_heads: 4\n",
     "line 4, column 10: malformed YAML: expected ',' or ']', but got ':'"),
    ("name: t\n\tseed: 1\n", r"line 2, column 1: malformed YAML: found character '\t' that "
                             "cannot start any token"),
    ("name: t\nseed: !!python/name:os.system\n",
     "line 2, column 7: malformed YAML: could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/name:os.system'; write plain YAML mappings, lists and scalars "
     "(no !!python tags)"),
])
def test_yaml_errors_give_line_and_column_and_mention_tags_only_for_tags(write_spec, text, line):
    # Every syntax error used to end with "(no !!python tags)", and gave no column.
    path = write_spec(text, name="bad.yaml")
    with pytest.raises(SpecError) as info:
        explorer.load_spec(path)
    assert str(info.value) == f"{path}: {line}"


def test_model_keys_list_drop_rate(write_spec):
    path = write_spec(base_doc(model={**TINY_MODEL, "droprate": 0.1}))
    with pytest.raises(SpecError, match="did you mean 'drop_rate'. valid keys: vocab_size, "
                                        "context_length, emb_dim, n_heads, n_layers, qkv_bias, "
                                        "drop_rate, dropout, scale_embeddings, logit_softcap, "
                                        "parametrization, base_width$"):
        explorer.load_spec(path)


def test_overrides_are_kept_on_the_spec(write_spec):
    spec = explorer.load_spec(write_spec(base_doc()), overrides=["model.n_layers=1", "seed=4"])
    assert spec.overrides == ("model.n_layers=1", "seed=4")
    assert "overrides" not in spec.to_dict()  # the resolved spec already holds their effect
