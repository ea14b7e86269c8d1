"""--html pages, read back with a parser: the same figures as the JSON reports (exactly), the
sections analyses present (a third-party one included), input escaped, nothing loaded from
outside the file, and the templates shipped as package data. The browser test is
tests/html/test_html_browser.py."""

import base64
import hashlib
import importlib.resources
import json
import os
import platform
import shlex
import subprocess
import sys

import pytest
from markupsafe import Markup

import explorer
import explorer.html
from tests.helpers import TINY_MODEL, TINY_TOKENIZER, run_cli
from explorer import Analysis, Chart, hookimpl
from explorer.analysis.compare_table import format_delta
from tests.helpers.html_page import header, parse, table_rows
from tests.helpers.sweep_helpers import write_grid_sweep, write_mid_sweep, write_sweep
from tests.helpers import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(name, **components):
    return {"name": name, "seed": 123, "tokenizer": TINY_TOKENIZER, "model": TINY_MODEL,
            "components": components}


def figure_rows(element):
    """{data-figure: exact value} of every figures table row under ``element``."""
    return {tr.attrs["data-figure"]: cells[1].value()
            for table in element.find_all("table") for tr, cells in table_rows(table)
            if "data-figure" in tr.attrs}


def provenance(root):
    footer = root.find("footer", id="provenance")
    return dict(zip([dt.text() for dt in footer.find_all("dt")],
                    [dd.text() for dd in footer.find_all("dd")]))


def assert_self_contained(text):
    """Nothing outside the file: no src, links only to anchors (and the data: icon), one inline
    script, allowed by the page's policy through its hash and by nothing else."""
    root = parse(text)
    for element in root.iter():
        assert "src" not in element.attrs, element.tag
        for name in ("href", "xlink:href"):
            link = element.attrs.get(name)
            assert link is None or link.startswith("#") or link == "data:,", (element.tag, link)
    (script,) = root.find_all("script")
    digest = base64.b64encode(hashlib.sha256(script.text().encode()).digest()).decode()
    policy = root.find("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert policy.startswith("default-src 'none';") and f"script-src 'sha256-{digest}';" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1]
    return root


def test_build_page_shows_the_json_reports_figures_text_and_components(capsys, write_spec,
                                                                        tmp_path):
    spec = write_spec(tiny("tiny-html"))
    page = tmp_path / "build.html"
    args = ["build", spec, "--only", "params,memory,gradflow,summary", "--set",
            "analyses.gradflow.steps=1", "--format", "json", "--html", page]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert f"wrote {page}" in err
    report = json.loads(out)
    root = assert_self_contained(page.read_text())
    registry = explorer.get_plugin_manager().registry()
    for name, result in report["analyses"].items():
        section = root.find("section", id=f"analysis-{name}")
        analysis = registry.analyses[name]
        assert section.find("h2").text() == name
        assert analysis.description in section.find("p", cls="about").text()
        figures = {f"{name}.{key}": value for key, value in analysis.figures_of(result).items()}
        assert figure_rows(section) == figures
        if name != "summary":  # the text report's section, character for character
            assert section.find("pre", cls="report").text() == analysis.load_render()(result)
    # by hand: embeddings 256*16 + 32*16, 2 blocks of 3,232, final norm 32, head 256*16
    assert figure_rows(root)["params.total"] == report["analyses"]["params"]["total"] == 15_200
    # summary presents itself: the module tree, folded (<details>), the model's children shown
    tree = root.find("section", id="analysis-summary").find("div", cls="tree")
    rows = report["analyses"]["summary"]["rows"]
    assert len(tree.find_all("summary")) + len(tree.find_all("div", cls="leaf")) == len(rows)
    assert ["open" in d.attrs for d in tree.find_all("details")][:2] == [True, False]
    # gradflow draws its chart for this one spec, after-steps panel included
    chart = root.find("section", id="analysis-gradflow").find("figure", cls="chart")
    assert chart.attrs["aria-label"].startswith("Gradient flow per block")
    assert chart.find("svg").find_all("path")
    # components: which plugin supplied each, as the JSON report says, with its description
    components = {cells[0].text(): [c.text() for c in cells[1:]]
                  for _, cells in table_rows(root.find("section", id="spec").find("table"))}
    assert list(components) == list(report["components"])
    norm = report["components"]["norm"]
    assert components["norm"][:3] == ["layernorm", "eps=1e-05, impl=auto",
                                      f"{norm['plugin']} ({norm['distribution']})"]
    assert components["norm"][3] == registry.components[("norm", "layernorm")].description
    facts = provenance(root)
    assert facts["command"] == shlex.join(["explorer", *map(str, args)])
    assert (facts["torch"], facts["python"], facts["seed"]) == (
        report["environment"]["torch"], platform.python_version(), "123")
    assert f"{os.cpu_count()} CPUs" in facts["machine"] and facts["date"][:2] == "20"


def test_compare_page_figures_deltas_differences_and_charts_equal_the_json(capsys, write_spec,
                                                                           tmp_path):
    specs = [write_spec(tiny("base"), "base.yaml"),
             write_spec(tiny("no-shortcut", residual="none", norm="none"), "nos.yaml"),
             write_spec(tiny("tied", weight_tying="tied"), "tied.yaml")]
    page = tmp_path / "compare.html"
    code, out, err = run_cli(capsys, "compare", *specs, "--only", "params,gradflow", "--set",
                         "analyses.gradflow.steps=1", "--format", "json", "--html", page)
    assert code == 0, err
    result = json.loads(out)
    root = assert_self_contained(page.read_text())

    table = root.find("table", id="figures")
    assert "sortable" in table.classes
    assert header(table) == ["figure", "base", "no-shortcut", "Δ", "tied", "Δ"]
    rows = table_rows(table)
    assert [tr.attrs["data-figure"] for tr, _ in rows] == [r["figure"] for r in result["rows"]]
    signs = set()
    for (tr, cells), row in zip(rows, result["rows"]):
        assert [cells[1].value(), cells[2].value(), cells[4].value()] == row["values"]
        for cell, diff, pct in zip((cells[3], cells[5]), row["delta"][1:], row["delta_pct"][1:]):
            assert cell.value() == (pct if pct is not None else diff)
            assert cell.text() == format_delta(diff, pct)
            sign = "pos" if diff and diff > 0 else "neg" if diff and diff < 0 else None
            assert [c for c in ("pos", "neg") if c in cell.classes] == ([sign] if sign else [])
            signs.add(sign)
    assert signs == {"pos", "neg", None}  # the no-shortcut gradients differ both ways
    by_figure = {tr.attrs["data-figure"]: cells for tr, cells in rows}
    assert by_figure["params.total"][1].text() == "15,200"
    assert by_figure["params.total"][5].text() == "-27%"  # tied: the head's 4,096 of 15,200

    differences = root.find("table", id="differences")
    shown = {cells[0].text(): [(c.text(), bool(c.find_all("mark"))) for c in cells[1:]]
             for _, cells in table_rows(differences)}
    assert shown == {  # a row per component kind: its name per spec, unlike the first's marked
        "components.norm": [("layernorm", False), ("none", True), ("layernorm", False)],
        "components.residual": [("pre_norm", False), ("none", True), ("pre_norm", False)],
        "components.weight_tying": [("none", False), ("none", False), ("tied", True)]}
    assert {key.rsplit(".", 1)[0] for key in result["spec_differences"]} == set(shown)

    charts = root.find("section", id="charts").find_all("figure", cls="chart")
    assert [c.attrs["aria-label"] for c in charts] == [
        "Parameters by component kind", "Gradient flow per block (one LM step on the sample text)"]
    assert "<!-- after 1 AdamW steps -->" in page.read_text()  # the second panel's title
    reports = root.find_all("details", cls="report")
    assert [d.find("summary").text() for d in reports] == result["labels"]
    # each spec's sections, with the same figures, folded away
    assert figure_rows(reports[2])["gradflow.loss"] == result["reports"][2]["analyses"][
        "gradflow"]["loss"]


def shipped_specs():
    """gpt2_small and the 13 ablations README compares it with, resolved (no model built)."""
    paths = [ROOT / "specs" / "gpt2_small.yaml",
             *sorted((ROOT / "specs" / "ablations").glob("*.yaml"))]
    return [explorer.load_spec(path).to_dict() for path in paths]


def differences_of(specs):
    """The compare page's spec-differences table of resolved ``specs``, parsed:
    {row name: [(summary text, folded parameters, marked) per spec]}."""
    from explorer.analysis.comparison import spec_differences
    from explorer.html.differences import differences_table
    from explorer.html.tables import table

    result = {"labels": [s["name"] for s in specs], "reports": [{"spec": s} for s in specs],
              "spec_differences": spec_differences(specs)}
    root = parse(str(table(differences_table(result))))
    rows = {}
    for _, cells in table_rows(root.find("table", id="differences")):
        rows[cells[0].text()] = [
            ((c.find("summary") if c.find_all("summary") else c).text(),
             [li.text() for li in c.find_all("li")], bool(c.find_all("mark")))
            for c in cells[1:]]
    return rows


def test_a_changed_component_is_one_row_its_parameters_folded():
    """Issue 19 item 13: learned -> rope was eleven rows, ten of "-" beside RoPE's defaults."""
    specs = shipped_specs()
    rows = differences_of(specs)
    assert list(rows) == ["components.norm", "components.activation", "components.ffn",
                          "components.attention", "components.positional",
                          "components.residual", "components.weight_tying", "layers.attention"]
    by_spec = {kind: dict(zip([s["name"] for s in specs], cells)) for kind, cells in rows.items()}
    assert by_spec["components.positional"]["gpt2-small"] == ("learned", [], False)
    assert by_spec["components.positional"]["gpt2-small-rope"] == ("rope", [
        "theta=10,000", "fraction=1", "scaling=none", "factor=1", "original_context=0", "low_freq_factor=1",
        "high_freq_factor=4", "beta_fast=32", "beta_slow=1", "truncate=yes",
        "attention_factor=1"], True)
    assert by_spec["components.positional"]["gpt2-small-nope"] == ("none", [], True)
    # The parameter that tells gqa's two users apart stays in view; the rest is folded.
    gqa, mqa = (by_spec["components.attention"][name]
                for name in ("gpt2-small-gqa", "gpt2-small-mqa"))
    assert (gqa[0], mqa[0]) == ("gqa n_kv_heads=4", "gqa n_kv_heads=1")
    assert gqa[1][:2] == ["impl=book", "window=0"] and gqa[2] and mqa[2]
    assert by_spec["components.norm"]["gpt2-small-rmsnorm"] == (
        "rmsnorm", ["eps=1e-06", "unit_offset=no"], True)
    # Where the component is the same, a parameter that differs keeps its own row.
    eps = explorer.load_spec(ROOT / "specs" / "gpt2_small.yaml",
                             overrides=["components.norm.eps=1e-6"]).to_dict()
    assert differences_of([specs[0], eps]) == {
        "components.norm.eps": [("1e-05", [], False), ("1e-06", [], True)]}


def test_the_compare_title_stays_short_with_many_specs():
    from explorer.html.pages import compare_title

    assert compare_title(["a", "b", "c"]) == "a vs b vs c"
    names = [s["name"] for s in shipped_specs()]
    assert compare_title(names) == "gpt2-small vs 13 other specs"
    assert compare_title([]) == "no specs"


class Presenting:
    """A third-party analysis of every presentation kind, registered on a fresh manager."""

    @hookimpl
    def explorer_analyses(self):
        def width(ctx):
            return {"width": ctx.spec.model.emb_dim, "note": "<b>not bold</b>", "list": [1]}

        def bars(fig, series):
            fig.subplots().bar([label for label, _ in series], [r["width"] for _, r in series])

        return [
            Analysis("own", run=width, needs_weights=False, description="Its own section.",
                     html=lambda r: Markup('<p class="own">width <b>{}</b>; {}</p>').format(
                         r["width"], r["note"]),
                     charts=(Chart("own", "Width per spec", bars),)),
            Analysis("plain", run=width, needs_weights=False,
                     html=lambda r: f"width {r['width']} < 20 & more"),
            Analysis("default", run=width, needs_weights=False,
                     figures=lambda r: {"width": r["width"], "wide": r["width"] > 20}),
            Analysis("broken", run=width, needs_weights=False, html=lambda r: 1 / 0,
                     charts=(Chart("bad", "A chart that raises", lambda fig, s: 1 / 0),)),
        ]


def test_a_third_party_analysis_presents_its_own_section_with_no_core_change(make_spec):
    manager = explorer.get_plugin_manager(entry_points=False)
    manager.register(Presenting(), "presenting")
    specs = [make_spec(plugins=manager), make_spec(plugins=manager, model={"emb_dim": 32})]
    only = ["own", "plain", "default", "broken"]
    page = explorer.html.build_page(explorer.analyze(specs[0], only=only), manager.registry())
    root = parse(page.html)

    own = root.find("section", id="analysis-own")
    assert own.find("p", cls="about").text() == "Its own section. from presenting"
    (paragraph,) = own.find_all("p", cls="own")  # Markup is inserted as HTML...
    assert paragraph.find("b").text() == "16"
    assert paragraph.text() == "width 16; <b>not bold</b>"  # ...with its arguments escaped
    assert own.find("figure", cls="chart").find("svg")
    plain = root.find("section", id="analysis-plain")  # a str is text
    assert plain.find("pre", cls="report").text() == "width 16 < 20 & more"
    default = root.find("section", id="analysis-default")  # figures table + the result's YAML
    assert figure_rows(default) == {"default.width": 16, "default.wide": False}
    assert default.find("pre", cls="report").text() == (
        "width: 16\nnote: <b>not bold</b>\nlist:\n- 1")
    broken = root.find("section", id="analysis-broken")  # one plugin cannot spoil the page
    assert figure_rows(broken) == {"broken.width": 16, "broken.note": "<b>not bold</b>"}
    assert broken.find("figure", cls="chart").find("p", cls="failure").text().startswith(
        "chart 'bad' of analysis 'broken' raised ZeroDivisionError")
    assert page.problems == [
        "html of analysis 'broken' raised ZeroDivisionError: division by zero; the default "
        "section is shown",
        "chart 'bad' of analysis 'broken' raised ZeroDivisionError: division by zero"]

    comparison = explorer.compare(specs, only=["own", "default"])
    page = explorer.html.compare_page(comparison, [s.plugin_manager.registry() for s in specs])
    root = parse(page.html)
    assert figure_rows(root.find("table", id="figures")) == {
        "own.width": 16, "own.note": "<b>not bold</b>", "default.width": 16,
        "default.wide": False}
    charts = root.find("section", id="charts")
    assert [f.attrs["aria-label"] for f in charts.find_all("figure")] == ["Width per spec"]
    assert page.problems == []


def test_input_is_shown_not_run(make_spec, write_spec):
    class Evil:
        @hookimpl
        def explorer_analyses(self):
            return [Analysis("evil", run=lambda ctx: {"n": 1}, needs_weights=False,
                             description='<img src=x onerror="window.pwned = 2">')]

    manager = explorer.get_plugin_manager(entry_points=False)
    manager.register(Evil(), "<script>window.pwned = 3</script>")
    name = "tiny <script>window.pwned = 1</script>"
    spec = explorer.load_spec(write_spec(tiny(name)), plugins=manager)
    text = explorer.html.build_page(explorer.analyze(spec, only=["evil"]), manager.registry()).html
    root = assert_self_contained(text)  # still one script: ours
    assert not root.find_all("img")
    assert root.find("h1").text() == name and root.find("title").text().startswith(name)
    about = root.find("section", id="analysis-evil").find("p", cls="about").text()
    assert about == '<img src=x onerror="window.pwned = 2"> from <script>window.pwned = 3</script>'
    assert "<script>window" not in text and "&lt;script&gt;window.pwned = 1" in text


@pytest.fixture
def mid_sweep(tmp_path):
    return write_mid_sweep(tmp_path)


def test_sweep_page_mid_sweep_has_the_json_reports_figures(capsys, mid_sweep, tmp_path):
    page = tmp_path / "sweep.html"
    code, out, err = run_cli(capsys, "sweep", mid_sweep, "--report", "--format", "json",
                         "--html", page)
    assert code == 0, err
    report = json.loads(out)
    root = assert_self_contained(page.read_text())
    assert root.find("p", cls="state").text() == (
        "6 runs (3 points x 2 seeds): 5 done, 0 failed, 1 running, 0 pending (INCOMPLETE)")
    assert "incomplete" in root.find("p", cls="state").classes
    table = root.find("table", id="points")
    assert header(table) == ["norm", "seeds", "val loss", "sd", "95% CI", "Δ vs baseline",
                             "Δ 95% CI", "sig.", "params", "FLOPs/token", "tokens/s"]
    rows = table_rows(table)
    for (tr, cells), point in zip(rows, report["points"]):
        m, d, c = point["final_val_loss"], point["delta"] or {}, point["costs"]
        assert [cell.value() for cell in cells] == [
            point["config"]["components.norm"], point["done"], m["mean"], m["sd"], m["ci"],
            d.get("mean"), d.get("ci"), d.get("significant"), c["parameters"],
            c["training_flops_per_token"], c["tokens_per_second"]]
    (base, base_cells), (rms, rms_cells), (none, none_cells) = rows
    assert "baseline" in base.classes and base_cells[5].text() == "baseline"
    assert "significant" in rms.classes and rms_cells[7].text() == "*"  # -0.1 on both seeds
    assert rms_cells[5].text() == "-0.1000" and "neg" in rms_cells[5].classes
    assert "incomplete" in none.classes and none_cells[1].text() == "1/2 (incomplete)"
    assert [f.attrs["aria-label"] for f in root.find("section", id="charts").find_all(
        "figure")] == ["Validation loss against training tokens, band from the lowest to the "
                       "highest seed", "Final validation loss (mean, 95% CI) against cost"]
    assert provenance(root)["seed"] == "1, 2"

    code, out, err = run_cli(capsys, "sweep", mid_sweep, "--status", "--html", page)
    assert code == 0, err
    status = parse(page.read_text()).find("section", id="status").find("pre").text()
    assert status.splitlines()[1:3] == ["6 runs: 5 done, 0 failed, 1 running, 0 pending",
                                        "driver: none running"]


def test_every_page_gives_the_torch_build_that_measured_it(capsys, mid_sweep, write_spec,
                                                          tmp_path):
    """The full version, "2.13.0+cpu": the build (cpu, cu121) is part of what ran."""
    import importlib.metadata

    import torch

    pages = {name: tmp_path / f"{name}.html" for name in ("build", "compare", "sweep")}
    spec = write_spec(tiny("tiny"))
    for args in (["build", spec, "--only", "params", "--html", pages["build"]],
                 ["compare", spec, spec, "--only", "params", "--html", pages["compare"]],
                 ["sweep", mid_sweep, "--report", "--html", pages["sweep"]]):
        code, out, err = run_cli(capsys, *args)
        assert code == 0, err
    shown = {name: provenance(parse(page.read_text()))["torch"] for name, page in pages.items()}
    assert shown == dict.fromkeys(pages, torch.__version__)
    assert torch.__version__ == importlib.metadata.version("torch")


def test_the_sweep_page_imports_no_torch(mid_sweep, tmp_path):
    code = ("import sys\nfrom explorer.cli import main\ntry:\n"
            f"    main(['sweep', {str(mid_sweep)!r}, '--report', '--html', "
            f"{str(tmp_path / 'p.html')!r}])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stderr
    assert (tmp_path / "p.html").exists()


def test_bad_html_paths_are_one_line_before_anything_runs(capsys, write_spec, tmp_path):
    spec = write_spec(tiny("t"))
    code, out, err = run_cli(capsys, "build", spec, "--html", tmp_path / "nowhere" / "p.html")
    assert (code, err) == (2, f"Error: --html {tmp_path}/nowhere/p.html: folder "
                              f"{tmp_path}/nowhere does not exist\n")
    code, _, err = run_cli(capsys, "compare", spec, spec, "--html", tmp_path)
    assert (code, err) == (2, f"Error: --html {tmp_path}: is a directory; give a file name, "
                              f"e.g. {tmp_path}/report.html\n")
    sweep = write_sweep(tmp_path)
    code, _, err = run_cli(capsys, "sweep", sweep, "--dry-run", "--html", tmp_path / "s.html")
    assert (code, err) == (2, "Error: --html writes the report's page: not with --dry-run "
                              "(nothing has run)\n")


def test_the_loader_finds_the_templates_through_importlib_resources():
    """What a wheel install has (tests/test_packaging.py checks that the wheel holds them)."""
    folder = ROOT / "explorer" / "html" / "templates"
    files = sorted(p.name for p in folder.iterdir())
    assert {"base.html.j2", "page.css", "page.js"} <= set(files)
    for name in files:
        assert importlib.resources.files("explorer.html").joinpath("templates", name).is_file()


@pytest.fixture(scope="module")
def big_sweep_page(tmp_path_factory):
    """The page of a 500-point sweep (2 norms x 250 learning rates x 2 seeds, all done)."""
    from explorer.sweep import report as sweep_report, status as sweep_status

    path, plan = write_grid_sweep(tmp_path_factory.mktemp("big"), rates=250, seeds=2)
    report = sweep_report(path, plan=plan)
    page = explorer.html.sweep_page(report, sweep_status(path, plan=plan))
    return report, page


def test_a_500_point_sweep_page_shows_50_rows_at_a_time_and_every_row_is_there(big_sweep_page):
    report, page = big_sweep_page
    assert page.problems == []
    root = assert_self_contained(page.html)
    table = root.find("table", id="points")
    assert table.attrs["data-page-size"] == "50"
    rows = table_rows(table)
    assert [tr.find("th").text() for tr, _ in rows] == [  # every point, in report order
        show_config(p) for p in report["points"]]
    assert len(rows) == 500
    shown = [tr for tr, _ in rows if "hidden" not in tr.attrs]
    assert shown == [tr for tr, _ in rows[:50]]  # the first page; the script pages the rest
    # without the script, a rule shows every row
    assert "<noscript><style>table[data-page-size] tr[hidden] { display: table-row; }" \
        in page.html
    # the status's 500 per-point lines are folded; its head is not
    status = root.find("section", id="status")
    assert status.find("pre").text().splitlines()[1] == (
        "1000 runs: 1000 done, 0 failed, 0 running, 0 pending")
    assert status.find("details").find("summary").text() == "per point and the runs in flight " \
        "(500 lines)"


def show_config(point):
    return point["config"]["components.norm"]


def test_a_500_point_sweep_pages_charts_name_ten_points_not_500(big_sweep_page):
    report, page = big_sweep_page
    charts = parse(page.html).find("section", id="charts").find_all("figure")
    assert len(charts) == 2
    for stem in ("curves", "cost"):
        svg = page.html[page.html.index(f'id="{stem}-'):]
        svg = svg[:svg.index("</svg>")]
        named = {label for label in (p["label"] for p in report["points"])
                 if f"<!-- {label} -->" in svg}
        # the legend's: the loss falls with the point's index, so the 5 highest losses are
        # the first 5 points (the baseline, point 0, among them) and the 5 lowest the last 5
        assert named == {p["label"] for p in report["points"][:5] + report["points"][-5:]}
        assert "<!-- the other 490 points -->" in svg
