"""The pages in a real browser: headless Chromium (Debian's ``chromium``; CI's .ci/run installs
it) loads a build, a compare and a sweep page at a desktop width (1280 px) and a phone's
(390 px): no console errors, no network requests, a screenshot that is not blank, every table
and chart laid out where it can be seen, the page never wider than the screen, input shown and
not run, and the figures table sorting by a column. README's comparison of gpt2-small with its
13 ablations (made tiny) shows every spec in its own colour and style, legends off the data,
charts of sane proportions, scaled so their text stays legible on a phone."""

import io

import pytest

import explorer
import explorer.html
from tests.helpers import ROOT, TINY_MODEL, TINY_TOKENIZER
from tests.helpers.chromium import Chromium, find_chromium
from explorer.sweep import report as sweep_report
from tests.helpers.sweep_helpers import write_mid_sweep

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (apt-get install chromium; "
                                                "or set EXPLORER_CHROMIUM to its path)"),
    pytest.mark.usefixtures("one_thread")]
WIDTHS = (1280, 390)

EVIL = "<script>window.pwned = 1</script>"

# Where every table and chart sits, skipping what a closed <details> folds away; and whether
# anything makes the page wider than the screen.
LAYOUT = """(() => {
  const shown = e => !e.closest("details:not([open])");
  const box = e => { const r = e.getBoundingClientRect(), s = getComputedStyle(e);
    return {w: r.width, h: r.height, left: r.left + scrollX,
            seen: s.visibility === "visible" && s.display !== "none"}; };
  return {width: innerWidth, scrollWidth: document.documentElement.scrollWidth,
          tables: [...document.querySelectorAll("table")].filter(shown).map(box),
          charts: [...document.querySelectorAll("figure.chart svg")].filter(shown).map(box),
          scripts: document.scripts.length, pwned: window.pwned === undefined ? null : 1,
          title: document.querySelector("h1").textContent};
})()"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory, write_spec_module):
    """A build page, a compare page (one spec named with a script tag) and a sweep page."""
    folder = tmp_path_factory.mktemp("pages")
    specs = [explorer.load_spec(write_spec_module(doc), overrides=["analyses.gradflow.steps=1"])
             for doc in (_tiny("base"), _tiny(f"tied {EVIL}", weight_tying="tied"))]
    only = ["params", "gradflow", "summary"]
    build = explorer.html.build_page(explorer.analyze(specs[0], only=only),
                                     specs[0].plugin_manager.registry())
    comparison = explorer.compare(specs, only=only)
    compare = explorer.html.compare_page(comparison,
                                         [s.plugin_manager.registry() for s in specs])
    for name, page in (("build", build), ("compare", compare)):
        page.write(folder / f"{name}.html")
    return folder


@pytest.fixture(scope="module")
def write_spec_module(tmp_path_factory):
    import yaml

    folder, counter = tmp_path_factory.mktemp("specs"), iter(range(100))

    def write(doc):
        path = folder / f"spec{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return write


def _tiny(name, **components):
    return {"name": name, "seed": 123, "tokenizer": TINY_TOKENIZER, "model": TINY_MODEL,
            "components": components}


def not_blank(png):
    """Many colours and a wide range of brightness: text and charts, not an empty page."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    low, high = image.convert("L").getextrema()
    colours = image.getcolors(maxcolors=1 << 20)
    return high - low > 150 and len(colours) > 50


def test_pages_in_chromium_at_desktop_and_phone_widths(pages, tmp_path):
    sweep = sweep_report(write_mid_sweep(tmp_path))
    explorer.html.sweep_page(sweep).write(pages / "sweep.html")
    with Chromium(CHROMIUM) as browser:
        for name in ("build", "compare", "sweep"):
            for width in WIDTHS:
                tab = browser.open(pages / f"{name}.html", width)
                where = f"{name}.html at {width} px"
                assert tab.console_errors() == [], where
                assert tab.requests() == [], where
                assert not_blank(tab.screenshot()), where
                layout = tab.evaluate(LAYOUT)
                assert layout["scrollWidth"] <= layout["width"], where  # no sideways scrolling
                assert layout["tables"] and layout["charts"], where
                for kind in ("tables", "charts"):
                    for box in layout[kind]:
                        assert box["seen"] and box["w"] > 50 and box["h"] > 20, (where, kind, box)
                        assert 0 <= box["left"] < layout["width"], (where, kind, box)
                for chart in layout["charts"]:  # scaled to the screen, never cut
                    assert chart["w"] <= layout["width"], (where, chart)
                assert layout["scripts"] == 1 and layout["pwned"] is None, where
        assert layout["title"] == "sweep sweep"
        assert tab.evaluate("document.querySelector('#points tr.incomplete th').textContent") \
            == "none"

        tab = browser.open(pages / "compare.html", 1280)
        assert tab.evaluate(LAYOUT)["title"] == f"base vs tied {EVIL}"  # shown, not run
        # sorting: the tied spec's Δ column, ascending then descending; missing values last
        order = """[...document.querySelectorAll('#figures tbody tr')].map(r =>
            JSON.parse(r.cells[3].getAttribute('data-value')))"""
        before = tab.evaluate(order)
        tab.evaluate("document.querySelectorAll('#figures thead th')[3].querySelector('button')"
                     ".click()")
        numbers = sorted(v for v in before if isinstance(v, (int, float)))
        missing = [v for v in before if not isinstance(v, (int, float))]
        assert tab.evaluate(order) == numbers + missing
        assert tab.evaluate("document.querySelectorAll('#figures thead th')[3]"
                            ".getAttribute('aria-sort')") == "ascending"
        tab.evaluate("document.querySelectorAll('#figures thead th')[3].querySelector('button')"
                     ".click()")
        assert tab.evaluate(order) == numbers[::-1] + missing


# Each inline chart: its proportions, how far the page scales it (its width in pt is 4/3 px),
# each legend entry's label (matplotlib writes it as a comment) and look (the styles of the
# lines, patches and markers drawn for it, marker shapes by their path), and whether the legend
# overlaps an axes' background (the first group of each axes).
CHARTS = """(() => {
  const rect = e => e.getBoundingClientRect();
  const overlap = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom &&
                            b.top < a.bottom;
  const look = g => [...g.querySelectorAll("path, use")].map(e => e.tagName === "use"
      ? document.getElementById(e.getAttribute("xlink:href").slice(1)).getAttribute("d") +
        e.getAttribute("style")
      : e.getAttribute("style")).join("|");
  return [...document.querySelectorAll("#charts figure.chart svg")].map(svg => {
    const box = rect(svg), legends = [...svg.querySelectorAll("g[id*='-legend_']")];
    const entries = [];
    for (const legend of legends) {
      let handle = [];
      for (const g of legend.children) {
        if (!/-text_\\d+$/.test(g.id)) { handle.push(look(g)); continue; }
        const label = [...g.childNodes].find(n => n.nodeType === Node.COMMENT_NODE);
        entries.push({label: label.textContent.trim(), look: handle.join("|")});
        handle = [];
      }
    }
    const panels = [...svg.querySelectorAll("g[id*='-axes_']")].map(a => rect(a.children[0]));
    return {chart: svg.closest("figure").getAttribute("aria-label"), w: box.width,
            h: box.height, scale: box.width / (parseFloat(svg.getAttribute("width")) * 4 / 3),
            entries, covered: legends.some(l => panels.some(p => overlap(rect(l), p)))};
  });
})()"""


@pytest.fixture(scope="module")
def ablations_page(tmp_path_factory):
    """``explorer compare specs/gpt2_small.yaml specs/ablations/*.yaml --only params,gradflow
    --html``, each spec made tiny by the same overrides (seconds, not minutes)."""
    tiny = ["tokenizer=bytes", "model.vocab_size=256", "model.context_length=32",
            "model.emb_dim=16", "model.n_heads=4", "model.n_layers=2",
            "analyses.gradflow.steps=1"]
    paths = [ROOT / "specs" / "gpt2_small.yaml",
             *sorted((ROOT / "specs" / "ablations").glob("*.yaml"))]
    specs = [explorer.load_spec(path, overrides=tiny) for path in paths]
    result = explorer.compare(specs, only=["params", "gradflow"])
    page = explorer.html.compare_page(result, [s.plugin_manager.registry() for s in specs])
    assert page.problems == [] and result["failures"] == []
    path = tmp_path_factory.mktemp("ablations") / "ablations.html"
    page.write(path)
    return path, result["labels"]


def test_fourteen_specs_each_have_their_own_look_and_fit_a_phone(ablations_page):
    """Issue 19 item 13: at 14 specs the params chart was a strip 8x wider than tall, colours
    repeated after 8 (gpt2-small and post-norm the same blue), the gradflow legend covered the
    curves and the title was four lines of "A vs B vs ..."."""
    path, labels = ablations_page
    assert len(labels) == 14
    with Chromium(CHROMIUM) as browser:
        tab = browser.open(path, 1280)
        assert tab.console_errors() == []
        assert tab.evaluate("document.querySelector('h1').textContent") == (
            "gpt2-small vs 13 other specs")
        assert tab.evaluate("[...document.querySelectorAll('ol.specs > li > a')]"
                            ".map(a => a.textContent)") == labels  # the full list, below it
        assert tab.evaluate("document.querySelector('header p.source code').textContent") == (
            "--set tokenizer=bytes --set model.vocab_size=256 --set model.context_length=32 "
            "--set model.emb_dim=16 --set model.n_heads=4 --set model.n_layers=2 "
            "--set analyses.gradflow.steps=1")  # once, not on each of the 14 lines
        charts = {c["chart"]: c for c in tab.evaluate(CHARTS)}
        assert list(charts) == ["Parameters by component kind",
                                "Gradient flow per block (one LM step on the sample text)"]
        params, gradflow = charts.values()
        assert [e["label"] for e in gradflow["entries"]] == labels
        assert [e["label"] for e in params["entries"]] == [
            "embedding", "positional", "attention", "ffn", "norm", "output_head"]
        for chart in charts.values():
            looks = [e["look"] for e in chart["entries"]]
            assert all(looks) and len(set(looks)) == len(looks), chart["chart"]
            assert not chart["covered"], chart["chart"]  # the legend sits off the data
            assert 0.5 <= chart["w"] / chart["h"] <= 3, chart
            assert chart["scale"] == pytest.approx(1, abs=0.01)  # a desktop shows it as drawn

        tab = browser.open(path, 390)
        layout = tab.evaluate(LAYOUT)
        assert layout["scrollWidth"] <= 390  # wide tables scroll inside their own box
        for chart in tab.evaluate(CHARTS):
            # Scaled to the screen, no more than to 0.6: the charts' 10 pt text stays 8 px high
            # (tests/analysis/test_charts.py::assert_legible holds every chart to 10 pt).
            assert chart["w"] <= 390 and chart["scale"] >= 0.6, chart
        scroll = tab.evaluate("""(() => { const box = document.querySelector(
            '#differences').closest('.scroll'); return [box.scrollWidth, box.clientWidth]; })()""")
        assert scroll[0] > scroll[1]  # 15 columns: the table scrolls sideways, not the page


def test_a_500_point_sweep_table_pages_in_chromium(tmp_path):
    """50 rows at a time: next and previous, show all, and a sort starts again at its first
    page (tests/html/test_html.py checks the rule that shows every row without scripts)."""
    from tests.helpers.sweep_helpers import write_grid_sweep

    path, plan = write_grid_sweep(tmp_path, rates=250, seeds=2)
    page = tmp_path / "big.html"
    explorer.html.sweep_page(sweep_report(path, plan=plan)).write(page)
    shown = """[...document.querySelectorAll('#points tbody tr')]
        .filter(r => getComputedStyle(r).display !== 'none').map(r => r.rowIndex)"""
    pager = "document.querySelector('nav.pager')"
    click = pager + ".querySelectorAll('button')[{}].click()"
    with Chromium(CHROMIUM) as browser:
        tab = browser.open(page, 1280)
        assert tab.console_errors() == []
        assert tab.evaluate(shown) == list(range(1, 51))
        assert tab.evaluate(pager + ".querySelector('span').textContent") == "rows 1–50 of 500"
        tab.evaluate(click.format(1))  # next
        assert tab.evaluate(shown) == list(range(51, 101))
        tab.evaluate(click.format(0))  # previous
        assert tab.evaluate(shown) == list(range(1, 51))
        tab.evaluate(click.format(2))  # show all
        assert tab.evaluate(shown) == list(range(1, 501))
        tab.evaluate(click.format(2))  # 50 at a time again
        tab.evaluate(click.format(1))
        # sort by val loss (ascending): the first page of the new order, its lowest 50 losses
        tab.evaluate("document.querySelectorAll('#points thead th')[3].querySelector('button')"
                     ".click()")
        assert tab.evaluate(shown) == list(range(1, 51))
        losses = tab.evaluate("""[...document.querySelectorAll('#points tbody tr')].map(r =>
            JSON.parse(r.cells[3].getAttribute('data-value')))""")
        assert losses == sorted(losses) and len(losses) == 500
        assert tab.console_errors() == []
