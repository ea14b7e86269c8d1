"""The pages in a real browser: headless Chromium (Debian's ``chromium``; CI's .ci/run installs
it) loads a build, a compare and a sweep page at a desktop width (1280 px) and a phone's
(390 px): no console errors, no network requests, a screenshot that is not blank, every table
and chart laid out where it can be seen, the page never wider than the screen, input shown and
not run, and the figures table sorting by a column."""

import io

import pytest

import explorer
import explorer.html
from tests.helpers import TINY_MODEL, TINY_TOKENIZER
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
