"""The three pages: a build report, a comparison, a sweep. Each gathers what its template
shows from the same plain data the JSON output holds, and returns a :class:`Page`."""

import itertools

import yaml

from ..analysis.report import overrides_text, params_text, provider_text
from .differences import differences_table
from .provenance import provenance as make_provenance
from .render import Page, data, render, show, sign
from .sections import Presenters, anchor, chart_section, failed_section, section
from .tables import Cell, Row, Table, figure_cell, table


def _presenters(registries):
    """Presenters of ``registries`` (a Registry or a list of them; default: the installed
    plugins')."""
    if registries is None:
        from ..registry.plugin_manager import get_plugin_manager

        registries = get_plugin_manager().registry()
    return Presenters(registries if isinstance(registries, (list, tuple)) else [registries])


def _chart_ids():
    return (f"chart{i}" for i in itertools.count(1))


def _spec_view(report, presenters):
    """What a page shows of one report's spec: where it came from, the resolved spec, and which
    plugin supplied each component."""
    spec = report["spec"]
    components = Table(
        [Cell("kind"), Cell("name"), Cell("parameters"), Cell("plugin (distribution)"),
         Cell("description")],
        [Row(Cell(kind), [Cell(c["name"]), Cell(params_text(c["params"])),
                          Cell(provider_text(c)), Cell(presenters.description(kind, c["name"]))])
         for kind, c in report["components"].items()])
    return {"name": spec["name"], "description": spec.get("description") or "",
            "source": f"{report.get('source') or '(no file)'}{overrides_text(report)}",
            "yaml": yaml.safe_dump(spec, sort_keys=False).rstrip(),
            # As the text report: the model's sizes, the seed and the tokenizer, at a glance.
            "model": yaml.safe_dump({"model": spec.get("model", {})}, sort_keys=False,
                                    default_flow_style=None).rstrip()
                     + f"\nseed: {spec.get('seed')}   tokenizer: {spec.get('tokenizer')}",
            "components": table(components) if components.rows else "",
            "warnings": report.get("warnings", []),
            "error": report.get("error") or ""}


def _sections(report, presenters, problems, ids, label, prefix="", charts=True):
    out = [section(name, result, presenters, problems, ids,
                   [(label, result)] if charts else [], prefix)
           for name, result in report["analyses"].items()]
    return out + [failed_section(name, message, presenters, prefix)
                  for name, message in report["failures"].items()]


def build_page(report, registry=None, provenance=None):
    """The page of a build report (the dict :func:`explorer.analyze` returns): the resolved
    spec, the plugin of each component, a section per analysis with its charts.

    ``registry`` (default: the installed plugins') presents the analyses: pass the one the
    report was made with (``spec.plugin_manager.registry()``) so plugins a spec or ``-p``
    loaded present their own sections. ``provenance`` (default: this process's) is the dict
    :func:`explorer.html.provenance` returns."""
    presenters, problems = _presenters(registry), []
    spec = report["spec"]
    view = _spec_view(report, presenters)
    sections = _sections(report, presenters, problems, _chart_ids(), spec["name"])
    provenance = provenance or make_provenance(seed=spec.get("seed"),
                                               environment=report.get("environment"))
    return Page(render("build.html.j2", title=spec["name"], kind="explorer build", spec=view,
                       sections=sections, provenance=provenance), problems)


def _delta_cell(diff, pct, base):
    """A difference as the text table shows it (coloured by sign), sorting by its %."""
    from ..analysis.compare_table import format_delta

    title = f"{'+' if diff > 0 else ''}{show(diff)} vs {base}" if sign(diff) else ""
    return Cell(format_delta(diff, pct), data(pct if pct is not None else diff),
                f"num delta {sign(diff)}".strip(), title=title)


def _figures_table(result):
    """Figures as rows, a column per spec and a Δ column after each but the first."""
    labels = result["labels"]
    header = [Cell("figure")]
    for i, label in enumerate(labels):
        header.append(Cell(label, cls="num"))
        if i:
            header.append(Cell("Δ", cls="num", title=f"{label} against {labels[0]}"))
    rows, group = [], None
    for r in result["rows"]:
        cells = []
        for i, value in enumerate(r["values"]):
            cells.append(figure_cell(value))
            if i:
                cells.append(_delta_cell(r["delta"][i], r["delta_pct"][i], labels[0]))
        rows.append(Row(Cell(r["figure"]), cells, "group" if r["analysis"] != group else "",
                        figure=r["figure"]))
        group = r["analysis"]
    return Table(header, rows, id="figures", sortable=True)


def _series(result, name):
    return [(label, report["analyses"][name])
            for label, report in zip(result["labels"], result["reports"])
            if isinstance(report["analyses"].get(name), dict)]


def compare_title(names):
    """A compare page's title: the names joined by "vs" while that stays short (three at most),
    else the first against how many others; the page's introduction lists them all."""
    if not names:
        return "no specs"
    joined = " vs ".join(names)
    if len(names) <= 3 and len(joined) <= 80:
        return joined
    return f"{names[0]} vs {len(names) - 1} other specs"


def compare_page(result, registries=None, provenance=None):
    """The page of a comparison (the dict :func:`explorer.compare` returns): the spec
    differences highlighted, the figures with their differences (sortable), every chart the
    analyses declare with all specs in it, and each spec's full report, folded.

    ``registries``: a Registry, or one per spec (``[s.plugin_manager.registry() for s in
    specs]``), as for :func:`build_page`."""
    presenters, problems, ids = _presenters(registries), [], _chart_ids()
    names = list(dict.fromkeys(n for report in result["reports"] for n in report["analyses"]))
    charts = [chart_section(name, presenters, problems, ids, _series(result, name))
              for name in names]
    # --set overrides apply to every spec: said once, not on each spec's line
    overrides = {overrides_text(report) for report in result["reports"]}
    shared = overrides.pop() if len(overrides) == 1 else ""
    specs = []
    for i, (label, report) in enumerate(zip(result["labels"], result["reports"])):
        specs.append({"label": label, "anchor": anchor("spec", i + 1),
                      "source": (report.get("source") or "(no file)")
                      + ("" if shared else overrides_text(report)),
                      "view": _spec_view(report, presenters),
                      "sections": _sections(report, presenters, problems, ids, label,
                                            prefix=f"spec{i + 1}", charts=False)})
    reports = result["reports"]
    provenance = provenance or make_provenance(
        seed=result["seed"], environment=reports[0].get("environment") if reports else None)
    title = compare_title(result["specs"])
    return Page(render("compare.html.j2", title=title, kind="explorer compare", result=result,
                       specs=specs, overrides=shared.strip(),
                       differences=table(differences_table(result)),
                       figures=table(_figures_table(result)),
                       charts=[c for c in charts if c.charts], provenance=provenance), problems)


# A sweep's per-point table shows this many rows at a time (a 500-point grid: 10 pages).
POINTS_PER_PAGE = 50


def sweep_page(report, status=None, provenance=None):
    """The page of a sweep's report (the dict :func:`explorer.sweep_report` returns), mid-sweep
    too: the per-point table (means, CIs, paired differences, significant ones marked;
    incomplete points marked; POINTS_PER_PAGE rows at a time), validation curves with seed
    bands, final loss against cost. ``status`` (:func:`explorer.sweep_status`'s dict) adds where
    the sweep stands now."""
    from ..sweep.plots import figures
    from ..sweep.results import adaptive_lines, failure_lines, summary_line
    from ..sweep.standing import status_text
    from .render import svg

    problems, charts = [], []
    try:
        for stem, caption, fig in figures(report):
            charts.append({"title": caption, "svg": svg(fig, stem)})
    except Exception as exc:
        problems.append(f"sweep charts raised {type(exc).__name__}: {exc}")
    provenance = provenance or make_provenance(seed=", ".join(map(str, report["seeds"])),
                                               environment=report.get("versions"))
    return Page(render("sweep.html.j2", title=f"sweep {report['sweep']}", kind="explorer sweep",
                       report=report, summary=summary_line(report),
                       table=table(_sweep_table(report)),
                       ladder=table(_ladder_table(report)) if report.get("ladder") else "",
                       adaptive="\n".join(adaptive_lines(report)[1:]),
                       failures=failure_lines(report), charts=charts,
                       status=status_text(status) if status else "",
                       train=yaml.safe_dump(report["train"], sort_keys=False).rstrip(),
                       provenance=provenance), problems)


def _ladder_table(report):
    """The text report's size-ladder table (same strings), each cell with its exact value."""
    from ..sweep.ladder_report import ladder_table

    header, rows = ladder_table(report["ladder"])
    out = []
    for variant, texts in zip(report["ladder"]["variants"], rows):
        fit, diff = variant["fit"] or {}, variant["difference"] or {}
        intervals = fit.get("intervals") or {}
        values = [None, None, fit.get("E"), fit.get("A"), fit.get("alpha"),
                  intervals.get("alpha"), fit.get("prediction"), intervals.get("prediction"),
                  diff.get("difference"), diff.get("interval"), diff.get("significant"),
                  diff.get("crossing"), diff.get("crossing_interval")]
        cells = [Cell(text, None if value is None else data(value), "num")
                 for text, value in zip(texts[1:], values[1:])]
        classes = " ".join(name for name, on in (("baseline", variant["is_baseline"]),
                                                 ("significant", diff.get("significant"))) if on)
        out.append(Row(Cell(variant["label"]), cells, classes, figure=variant["label"]))
    return Table([Cell(h or "sig.", cls="" if i == 0 else "num") for i, h in enumerate(header)],
                 out, id="ladder")


def _sweep_table(report):
    """The text report's table (same strings), each cell with its exact value."""
    from ..sweep.results import METRIC, length_cells, table as text_table

    header, rows = text_table(report)
    n = len(report["columns"])
    header = [Cell(text or "sig.", cls="" if i < n else "num",
                   title="" if text else "* when the 95% CI of the difference excludes 0")
              for i, text in enumerate(header)]
    out = []
    for point, texts in zip(report["points"], rows):
        m, d, c = point[report["metric"]], point["delta"] or {}, point["costs"]
        values = [point["config"][k] for k in report["columns"]] + [
            point["done"], m["mean"], m["sd"], m["ci"], d.get("mean"), d.get("ci"),
            d.get("significant"), c.get("parameters"), c.get("training_flops_per_token"),
            c.get("tokens_per_second")] + [value for _, value in length_cells(report, point)]
        cells = [Cell(text, data(value), "" if i < n else "num")
                 for i, (text, value) in enumerate(zip(texts, values))]
        delta = cells[n + 4]
        delta.cls = f"num delta {sign(d.get('mean'))}".strip()
        if not point["complete"]:
            cells[n].cls += " incomplete"
        classes = " ".join(name for name, on in (("baseline", point["is_baseline"]),
                                                 ("incomplete", not point["complete"]),
                                                 ("significant", d.get("significant")))
                           if on)
        head = cells.pop(0) if n else Cell(point["label"])
        out.append(Row(head, cells, classes, figure=point["label"]))
    if not n:
        header.insert(0, Cell("point"))
    return Table(header, out, id="points", sortable=True, page_size=POINTS_PER_PAGE)
