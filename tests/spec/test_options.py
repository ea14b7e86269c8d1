"""One schema and one engine for every option: numbers read one way wherever they are written
(a spec, --set, train settings), and the model's keys from ModelConfig's fields."""

import dataclasses

import pytest

import explorer
from explorer import SpecError, TrainConfig
from explorer.registry.params import Param, as_number, keys_of
from explorer.spec.config import ModelConfig
from tests.helpers import TINY_MODEL, TINY_TOKENIZER


def spec_doc(**changes):
    return {"name": "t", "tokenizer": TINY_TOKENIZER, "model": dict(TINY_MODEL), **changes}


# -- numbers: one parser ------------------------------------------------------------------------

@pytest.mark.parametrize("text, number", [
    ("3e-4", 3e-4), ("1e6", 1e6), ("1.5e3", 1500.0), ("1.2E+6", 1.2e6), ("-2e-3", -2e-3),
    (".5e1", 5.0), ("1_0e-3", 0.01), ("1_000.5e0", 1000.5),
])
def test_exponent_notation_is_a_number(text, number):
    assert as_number(text) == number


@pytest.mark.parametrize("text", ["1__0e-3", "_1e-3", "1e-3_", "1_e-3", "0.5", "1", "inf", "nan",
                                  "0x10", " 1e-3", "e5", "1e"])
def test_any_other_string_stays_a_string(text):
    assert as_number(text) == text


def eps_in_a_spec(write_spec, value):
    doc = spec_doc(components={"norm": {"name": "layernorm", "eps": value}})
    return explorer.load_spec(write_spec(doc)).components["norm"].params["eps"]


def lr_in_train_settings(value):
    return TrainConfig.from_dict({"lr": value}, "s.yaml").lr


def test_1_0e_minus_3_is_the_same_number_in_a_spec_and_in_train_settings(write_spec):
    assert eps_in_a_spec(write_spec, "1_0e-3") == 0.01
    assert lr_in_train_settings("1_0e-3") == 0.01


@pytest.mark.parametrize("text", ["1__0e-3", "_1e-3"])
def test_underscores_yaml_would_not_write_are_refused_in_both(write_spec, text):
    # The train settings' parser used to drop every underscore and read these as 0.01, 0.001,
    # while a spec refused them.
    with pytest.raises(SpecError,
                       match=rf": components\.norm\.eps: expected a number, got '{text}'$"):
        eps_in_a_spec(write_spec, text)
    with pytest.raises(SpecError, match=rf"^s\.yaml: train\.lr: expected a number, got '{text}'$"):
        lr_in_train_settings(text)


def test_a_whole_float_is_an_integer_in_a_spec_as_in_train_settings(write_spec):
    # analyses.train.steps used to refuse 2.0 and "1e3" in a spec that a sweep's train: took.
    doc = spec_doc(analyses={"train": {"steps": "1e3", "eval_every": 50.0}})
    options = explorer.load_spec(write_spec(doc)).analyses["train"]
    assert (options["steps"], options["eval_every"]) == (1000, 50)
    assert type(options["steps"]) is int
    config = TrainConfig.from_dict({"steps": "1e3", "eval_every": 50.0})
    assert (config.steps, config.eval_every) == (1000, 50)
    with pytest.raises(SpecError, match=r"analyses\.train\.steps: expected an integer, got 2\.5$"):
        explorer.load_spec(write_spec(spec_doc(analyses={"train": {"steps": 2.5}})))


def test_a_quoted_number_is_a_string_everywhere(write_spec):
    # Only exponent notation is read from a string (YAML 1.1 leaves 3e-4 a string; "0.5" is one
    # because someone quoted it): the train settings used to read "0.5" as 0.5.
    with pytest.raises(SpecError, match=r"^s\.yaml: train\.lr: expected a number, got '0\.5'$"):
        lr_in_train_settings("0.5")
    with pytest.raises(SpecError, match=r"model\.n_layers: expected an integer, got '2'$"):
        explorer.load_spec(write_spec(spec_doc(model={**TINY_MODEL, "n_layers": "2"})))


def test_an_integer_too_big_for_a_float_is_refused_in_one_line():
    with pytest.raises(explorer.ParamError, match=r"^expected a finite number, got 1000"):
        Param("x", float, 1.0).check(10**400)


# -- the model's keys come from ModelConfig's fields --------------------------------------------

def test_the_model_keys_are_modelconfigs_fields(write_spec):
    names = [f.name for f in dataclasses.fields(ModelConfig)]
    assert keys_of(ModelConfig) == (*names[:names.index("dropout")], "drop_rate",
                                    *names[names.index("dropout"):])
    spec = explorer.load_spec(write_spec(spec_doc()))
    mup_only = ("parametrization", "base_width")  # written only for a μP model
    assert list(spec.to_dict()["model"]) == [n for n in names if n not in mup_only]
    assert spec.to_dict()["model"]["dropout"] == {"embedding": 0.0, "attention": 0.0,
                                                  "residual": 0.0}
    with pytest.raises(SpecError, match="unknown key; did you mean 'n_layers'. valid keys: "
                                        + ", ".join(keys_of(ModelConfig)) + "$"):
        explorer.load_spec(write_spec(spec_doc(model={**TINY_MODEL, "n_layer": 2})))


def test_a_size_beyond_its_maximum_and_a_missing_one_name_the_bound(write_spec):
    with pytest.raises(SpecError, match=r"model\.n_layers: must be <= 1024, got 2000$"):
        explorer.load_spec(write_spec(spec_doc(model={**TINY_MODEL, "n_layers": 2000})))
    model = {k: v for k, v in TINY_MODEL.items() if k != "emb_dim"}
    with pytest.raises(SpecError, match=r"model\.emb_dim: missing; an integer >= 1, <= 131072$"):
        explorer.load_spec(write_spec(spec_doc(model=model)))
