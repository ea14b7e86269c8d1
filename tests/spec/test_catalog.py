"""The shipped specs and sweep files by name (explorer.spec.catalog): from any folder, a path that
exists winning over a name, an unknown name refused with its close matches; ``explorer specs``."""

import json

import pytest

import explorer
from explorer.analysis.shipped import list_specs
from explorer.spec.catalog import SPECS, SWEEPS, as_name, summary_line
from tests.helpers import ROOT, run_cli


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Run in an empty folder outside the checkout, as an installed user does."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_shipped_file_has_a_name():
    assert sorted(SPECS.names()) == sorted(
        p.relative_to(ROOT / "specs").with_suffix("").as_posix()
        for p in (ROOT / "specs").rglob("*.yaml"))
    assert sorted(SWEEPS.names()) == sorted(
        p.relative_to(ROOT / "sweeps").with_suffix("").as_posix()
        for p in (ROOT / "sweeps").rglob("*.yaml"))


@pytest.mark.parametrize("reference, name", [
    ("gpt2_small", "gpt2_small"), ("specs/gpt2_small.yaml", "gpt2_small"),
    ("models/llama3_8b", "models/llama3_8b"), ("specs/models/llama3_8b.yml", "models/llama3_8b"),
    ("./specs/tiny.yaml", "tiny"),
])
def test_a_path_reads_as_its_name(reference, name):
    assert as_name(reference, SPECS) == name


@pytest.mark.parametrize("reference", ["gpt2_small", "specs/gpt2_small.yaml", "specs/gpt2_small"])
def test_load_spec_by_name_from_any_folder(elsewhere, reference):
    spec = explorer.load_spec(reference)
    assert spec.name == "gpt2-small"
    assert explorer.analyze(spec, only=["params"])["analyses"]["params"]["total"] == 163_009_536


def test_a_unique_last_part_is_enough(elsewhere):
    assert explorer.load_spec("llama3_8b").name == "Meta-Llama-3-8B"
    assert explorer.load_spec("models/llama3_8b").name == "Meta-Llama-3-8B"


def test_a_path_that_exists_wins_over_a_name(elsewhere):
    (elsewhere / "gpt2_small.yaml").write_text(
        (ROOT / "specs/tiny.yaml").read_text().replace("name: tiny", "name: mine"))
    assert explorer.load_spec("gpt2_small.yaml").name == "mine"
    assert explorer.load_spec("gpt2_small").name == "gpt2-small"  # no file of that path


def test_unknown_name_names_the_close_matches(elsewhere, capsys):
    code, out, err = run_cli(capsys, "build", "gpt2_smal", "--only", "params")
    assert (code, out) == (2, "")
    assert err == ("Error: gpt2_smal: no such file, and no shipped spec of that name; did you "
                   "mean 'gpt2_small', 'gpt2_xl' or 'gpt2_small_openai'? `explorer specs` "
                   "lists them\n")


def test_unknown_name_without_close_matches(elsewhere):
    with pytest.raises(explorer.SpecError, match=r"^zzzz: no such file, and no shipped spec of "
                                                 r"that name; `explorer specs` lists them$"):
        explorer.load_spec("zzzz")


def test_build_by_name_from_another_folder(elsewhere, capsys):
    code, out, _ = run_cli(capsys, "build", "gpt2_small", "--only", "params", "--format", "json")
    assert code == 0
    assert json.loads(out)["analyses"]["params"]["total"] == 163_009_536


def test_a_sweep_by_name_keeps_its_store_in_the_current_folder(elsewhere):
    sweep = explorer.load_sweep("smoke")
    assert sweep.source == str(ROOT / "sweeps/smoke.yaml")
    assert sweep.default_store() == elsewhere / "smoke.sqlite"
    assert explorer.load_sweep(ROOT / "sweeps/smoke.yaml").default_store() == \
        ROOT / "sweeps/smoke.sqlite"


def test_sweep_dry_run_by_name(elsewhere, capsys):
    code, out, _ = run_cli(capsys, "sweep", "smoke", "--dry-run", "--format", "json")
    assert code == 0
    assert json.loads(out)["runs"] == 4  # 2 norms x 2 seeds
    assert list(elsewhere.iterdir()) == []  # a dry run stores nothing


def test_unknown_sweep_name(elsewhere, capsys):
    code, _, err = run_cli(capsys, "sweep", "positionl", "--dry-run")
    assert code == 2
    assert err == ("Error: positionl: no such file, and no shipped sweep file of that name; "
                   "did you mean 'positional'? `explorer specs --sweeps` lists them\n")


def test_summary_line_is_the_first_sentence_of_the_opening_comment():
    assert summary_line(ROOT / "specs/ablations/alibi.yaml") == \
        "GPT-2 small with ALiBi (Press et al. 2022)"
    assert summary_line(ROOT / "specs/gpt2_small.yaml") == \
        "GPT-2 small as the book builds it (GPT_CONFIG_124M, chapter 4)"
    assert summary_line(ROOT / "specs/models/llama3_8b.yaml") == "meta-llama/Meta-Llama-3-8B"


def test_list_specs_counts_parameters_as_the_book():
    rows = {row["name"]: row for row in list_specs()}
    assert rows.keys() == SPECS.names().keys()
    assert rows["gpt2_small"]["parameters"] == 163_009_536
    assert rows["gpt2_medium"]["parameters"] == 406_212_608
    assert rows["gpt2_small_openai"]["parameters"] == 124_439_808
    assert rows["models/llama3_8b"]["parameters"] == 8_030_261_248  # transformers' meta build


def test_specs_command_lists_one_line_each(capsys):
    code, out, _ = run_cli(capsys, "specs")
    lines = out.splitlines()
    assert code == 0 and len(lines) == len(SPECS.names())
    assert ["gpt2_small", "163,009,536"] in [line.split()[:2] for line in lines]
    assert ["tiny", "339,840"] in [line.split()[:2] for line in lines]
    code, out, _ = run_cli(capsys, "specs", "--sweeps", "--format", "json")
    assert code == 0
    assert {row["name"]: row["runs"] for row in json.loads(out)} == \
        {**{row["name"]: row["runs"] for row in json.loads(out)},
         **{"lengths": 20, "norms": 12, "positional": 20, "smoke": 4, "mup_transfer": 64}}


def test_an_unknown_name_close_to_a_last_part_suggests_the_full_name(elsewhere):
    with pytest.raises(explorer.SpecError, match=r"^llama3_8: no such file, and no shipped spec "
                                                 r"of that name; did you mean 'models/llama3_8b' "
                                                 r"or 'llama_style'\? `explorer specs` lists"):
        explorer.load_spec("llama3_8")


def test_the_python_api_lists_what_the_command_prints():
    assert [row["name"] for row in explorer.list_specs()] == list(SPECS.names())
    assert [row["name"] for row in explorer.list_sweeps()] == list(SWEEPS.names())
