"""An analysis's section of a page: a heading (name, description, plugin), a body, charts.

The body is the analysis's own ``html(result)`` when it has one, else the default: a table of
its ``figures`` and its ``render`` text (the text report's section). Its ``charts`` follow as
inline SVG. Whatever a plugin's hook raises is reported as a problem and the default (or a note
where a chart would be) takes its place: one plugin cannot spoil the page.
"""

import re
from dataclasses import dataclass, field

from markupsafe import Markup

from ..registry.components import flat_figures
from ..analysis.report import section_text
from .render import svg
from .tables import figures_table, text_block


@dataclass
class ChartView:
    title: str
    svg: Markup | None  # None when drawing failed
    failure: str = ""


@dataclass
class Section:
    name: str
    anchor: str  # the section's id, for the page's contents
    description: str = ""
    plugin: str = ""  # "plugin (distribution)"
    body: Markup = Markup("")
    charts: list = field(default_factory=list)  # of ChartView
    failure: str = ""  # the analysis failed: this message instead of a body


class Presenters:
    """Analyses, their plugins and component descriptions from one or several registries
    (compare gives each spec its own): a name is looked up in each, in order."""

    def __init__(self, registries):
        self.registries = list(registries)

    def _first(self, lookup):
        return next((found for r in self.registries if (found := lookup(r)) is not None), None)

    def analysis(self, name):
        return self._first(lambda r: r.analyses.get(name))

    def plugin(self, kind, name):
        """``plugin (distribution)`` of a component, or of an analysis with kind "analysis"."""
        provider = self._first(lambda r: r.provider.get((kind, name)))
        return str(provider) if provider else ""

    def description(self, kind, name):
        component = self._first(lambda r: r.components.get((kind, name)))
        return component.description if component else ""


def anchor(*parts):
    """An id from names (spaces and punctuation become -), unique when its parts are."""
    return "-".join(re.sub(r"[^A-Za-z0-9_.-]", "-", str(p)) for p in parts)


def _failed(what, name, exc):
    return f"{what} of analysis {name!r} raised {type(exc).__name__}: {exc}"


def body(analysis, name, result, problems):
    """The section's body (Markup): the analysis's ``html(result)``, or the default."""
    try:
        own = analysis.load_html() if analysis is not None else None
        if own is not None:
            out = own(result)
            if isinstance(out, Markup):  # before str: Markup is a str
                return out
            if isinstance(out, str):
                return text_block(out)
            raise TypeError(f"returned {type(out).__name__}, expected markupsafe.Markup or str")
    except Exception as exc:
        problems.append(_failed("html", name, exc) + "; the default section is shown")
    return default_body(analysis, name, result, problems)


def default_body(analysis, name, result, problems):
    """A table of the analysis's figures, then its text as the text report prints it."""
    from ..analysis.comparison import checked_figures  # imports torch: only pages with analyses

    parts = []
    try:
        if isinstance(result, dict):
            figures = checked_figures(analysis, result) if analysis else flat_figures(result)
            if figures:
                parts.append(figures_table(figures, prefix=name))
    except Exception as exc:
        problems.append(_failed("figures", name, exc))
    try:
        text = section_text(result, analysis.load_render() if analysis else None)
    except Exception as exc:
        problems.append(_failed("render", name, exc) + "; its YAML is shown")
        text = section_text(result)
    parts.append(text_block(text))
    return Markup("").join(parts)


def charts(analysis, name, series, ids, problems):
    """Each of the analysis's charts drawn for ``series`` (``[(label, result), ...]``), as
    inline SVG whose ids start with the next of ``ids``."""
    from ..analysis.plots import draw

    views = []
    for chart in analysis.charts if analysis is not None and series else ():
        try:
            views.append(ChartView(chart.title, svg(draw(chart, series), next(ids))))
        except Exception as exc:
            message = _failed(f"chart {chart.name!r}", name, exc)
            problems.append(message)
            views.append(ChartView(chart.title, None, message))
    return views


def _anchor(prefix, name):
    return anchor(prefix, "analysis", name) if prefix else anchor("analysis", name)


def section(name, result, presenters, problems, ids, series, prefix=""):
    """The Section of analysis ``name``'s ``result``, its charts drawn for ``series``
    (``[(label, result), ...]``; ``[]``: no charts). ``prefix`` keeps anchors unique when a
    page holds several reports."""
    analysis = presenters.analysis(name)
    return Section(name, _anchor(prefix, name),
                   description=analysis.description if analysis else "",
                   plugin=presenters.plugin("analysis", name),
                   body=body(analysis, name, result, problems),
                   charts=charts(analysis, name, series, ids, problems))


def failed_section(name, message, presenters, prefix=""):
    analysis = presenters.analysis(name)
    return Section(name, _anchor(prefix, name),
                   description=analysis.description if analysis else "",
                   plugin=presenters.plugin("analysis", name), failure=message)


def chart_section(name, presenters, problems, ids, series):
    """Only the charts of analysis ``name``, drawn for ``series`` (a comparison's specs)."""
    analysis = presenters.analysis(name)
    return Section(name, anchor("charts", name),
                   description=analysis.description if analysis else "",
                   plugin=presenters.plugin("analysis", name),
                   charts=charts(analysis, name, series, ids, problems))
