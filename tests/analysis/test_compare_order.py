"""The order of compare's rows: each analysis's figures together, a figure only some specs have
among its own analysis's, where those specs put it (issue 19, item 12)."""

import pytest

import explorer
from explorer import Analysis, hookimpl
from explorer.analysis.compare_table import to_markdown, to_text
from explorer.analysis.comparison import merged_order
from tests.helpers import TINY_MODEL, TINY_TOKENIZER


def layer_figures(result):
    """``b`` only for a 3-layer model, between ``a`` and ``c``."""
    return {"a": 1, **({"b": 2} if result["layers"] == 3 else {}), "c": 3}


class LayerPlugin:
    @hookimpl
    def explorer_analyses(self):
        run = lambda ctx: {"layers": ctx.spec.model.n_layers}  # noqa: E731
        return [Analysis(name="layered", run=run, figures=layer_figures, needs_weights=False),
                Analysis(name="after", run=lambda ctx: {"x": 9}, needs_weights=False)]


@pytest.fixture
def compared(write_spec):
    def compare(*n_layers):
        plugins = explorer.get_plugin_manager(entry_points=False)
        plugins.register(LayerPlugin(), "layer-plugin")
        specs = [explorer.load_spec(write_spec({
            "name": f"l{n}", "seed": 1, "tokenizer": TINY_TOKENIZER,
            "model": {**TINY_MODEL, "n_layers": n}}), plugins=plugins) for n in n_layers]
        return explorer.compare(specs, only=["layered", "after"])
    return compare


def test_a_figure_only_a_later_spec_has_sits_within_its_analysis(compared):
    # It used to come after every group: layered.a, layered.c, after.x, layered.b.
    result = compared(2, 3)
    assert [(r["figure"], r["values"]) for r in result["rows"]] == [
        ("layered.a", [1, 1]), ("layered.b", [None, 2]), ("layered.c", [3, 3]),
        ("after.x", [9, 9])]
    text = to_text(result)
    assert text.count("\nlayered\n") == 1  # one heading for the analysis, not two
    figures = text[text.index("\nfigure"):].splitlines()[1:]
    assert [line.split()[0] for line in figures] == ["figure", "layered", "a", "b", "c", "after",
                                                     "x"]
    assert [line.split(" | ")[0] for line in to_markdown(result).splitlines()
            if line.startswith("| layered") or line.startswith("| after")] == [
        "| layered.a", "| layered.b", "| layered.c", "| after.x"]


def test_the_first_spec_having_it_changes_nothing(compared):
    assert [r["figure"] for r in compared(3, 2)["rows"]] == [
        "layered.a", "layered.b", "layered.c", "after.x"]


@pytest.mark.parametrize("sequences, merged", [
    ([["a", "c"], ["a", "b", "c"]], ["a", "b", "c"]),
    ([["a", "c"], ["b", "a"]], ["b", "a", "c"]),  # first where it comes first
    ([["a", "d"], ["a", "b", "d"], ["a", "c", "d"]], ["a", "b", "c", "d"]),  # earlier specs first
    ([["a", "b"], ["b", "a", "z"]], ["a", "z", "b"]),  # the first spec's order; z after a
    ([[], ["x"], ["x", "y"]], ["x", "y"]),
])
def test_merged_order(sequences, merged):
    assert merged_order(sequences) == merged
