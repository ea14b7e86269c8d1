"""YAML nested too deep (or holding itself through an alias) is one line naming the file, exit
2, wherever YAML is read: a spec file, a --set value or key (a sweep file in
tests/sweep/test_plan.py). PyYAML builds documents recursively: it used to be "internal error:
RecursionError", exit 1."""

import pytest

import explorer
from explorer import SpecError
from tests.helpers import TINY_MODEL, TINY_TOKENIZER, run_cli

TINY = "specs/tiny.yaml"


def spec_doc(**changes):
    return {"name": "t", "tokenizer": TINY_TOKENIZER, "model": dict(TINY_MODEL), **changes}


def test_a_spec_nested_5000_deep_is_one_line_naming_the_file(write_spec, capsys):
    # It used to be "internal error: RecursionError", exit 1.
    path = write_spec("name: t\nmodel: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(SpecError) as info:
        explorer.load_spec(path)
    assert str(info.value) == (f"{path}: line 2, column 107: nested more than 100 levels deep; "
                               "at most 100 levels of mappings and lists")
    code, out, err = run_cli(capsys, "build", path)
    assert (code, out, err) == (2, "", f"Error: {info.value}\n")


def test_100_levels_are_read(write_spec):
    # The spec's mapping is level 1, analyses' 2, samples' 3, then 97 nested lists: 4 to 100.
    path = write_spec(spec_doc(analyses={"samples": {"prompts": "X"}}))
    text = path.read_text().replace("prompts: X", "prompts: " + "[" * 97 + "]" * 97)
    path.write_text(text)
    with pytest.raises(SpecError, match=r"analyses\.samples\.prompts: prompt 0 is \[\[\[\["):
        explorer.load_spec(path)  # read, then refused by the analysis: not a list of strings
    path.write_text(text.replace("[" * 97, "[" * 98).replace("]" * 97, "]" * 98))
    with pytest.raises(SpecError, match=r"nested more than 100 levels deep"):
        explorer.load_spec(path)


def test_an_alias_inside_the_node_it_names_is_refused(write_spec):
    # &x {y: *x} is a mapping that holds itself: walking it used to exhaust the stack.
    path = write_spec("name: t\nmodel: &x {vocab_size: 256, y: *x}\n")
    with pytest.raises(SpecError) as info:
        explorer.load_spec(path)
    assert str(info.value) == (f"{path}: line 2, column 32: *x is inside the node it names (a "
                               "structure that holds itself); an alias may repeat a node "
                               "elsewhere, not inside itself")


def test_a_set_value_or_key_nested_too_deep_is_one_line(capsys):
    code, out, err = run_cli(capsys, "build", TINY, "--set", "model.n_layers=" + "[" * 5000)
    assert (code, out, err) == (2, "", "Error: --set model.n_layers: the value is nested more "
                                       "than 100 levels deep; at most 100 levels of mappings and "
                                       "lists\n")
    code, out, err = run_cli(capsys, "build", TINY, "--set", "a." * 3000 + "b=1")
    assert code == 2 and out == ""
    assert err.startswith("Error: --set: a.a.a.") and err.endswith(
        ": the key is nested more than 100 levels deep; a spec key as a file writes it, e.g. "
        "model.n_layers\n")
