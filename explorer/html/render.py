"""One self-contained HTML file from page data: Jinja2 templates (package data, autoescaping on),
the stylesheet and script inline, charts as inline SVG.

Nothing on a page refers to anything outside it, and the page says so to the browser: its
Content-Security-Policy allows no fetch at all, styles only inline, and only the page's own
script (by its SHA-256), so even text that escaped escaping could not run or load anything.
"""

import base64
import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field

import jinja2
from markupsafe import Markup

from ..atomic import write_text

TEMPLATES = "templates"  # the folder inside explorer.html: package data (setup.cfg)


@dataclass
class Page:
    """A rendered page: ``html`` (the whole document) and ``problems``, one line for each part
    a plugin failed to present (an ``html`` hook or a chart that raised): the page still shows
    the rest, and says what is missing where it would have been."""

    html: str
    problems: list = field(default_factory=list)

    def write(self, path):
        """Write the page to ``path`` through a temporary file and a rename."""
        write_text(path, self.html)

    def __str__(self):
        return self.html


def printable(text):
    """``text`` with control characters written as escapes (``\\x01``), as the text table does:
    a model's raw bytes must not end up as invisible characters in a page."""
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in str(text))


def show(value):
    """A figure for display, as the text reports show it."""
    from ..analysis.compare_table import format_value  # imports torch: only where figures are shown

    return printable(value) if isinstance(value, str) else format_value(value)


def data(value):
    """A value as the JSON a ``data-value`` attribute carries: exact (the JSON report's number),
    NaN and inf as strings, as in the JSON report."""
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)
    return json.dumps(value, allow_nan=False)


def sign(value):
    """The CSS class of a difference: ``pos``, ``neg``, or "" (zero, none, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value == value:
        return ""
    return "pos" if value > 0 else "neg" if value < 0 else ""


@functools.lru_cache(maxsize=1)
def environment():
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("explorer.html", TEMPLATES),
        autoescape=True,  # everything from input is escaped unless it is Markup
        undefined=jinja2.StrictUndefined,  # a typo in a template is an error, not a blank
        trim_blocks=True, lstrip_blocks=True)
    env.filters.update(show=show, data=data, sign=sign, printable=printable)
    return env


def _asset(name):
    """A static file of the templates folder, verbatim (inlined, never parsed as a template)."""
    env = environment()
    return env.loader.get_source(env, name)[0]


def content_security_policy(script):
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")


def render(template, **context):
    """The page ``template`` (a file of the templates folder) rendered with ``context``, with
    the stylesheet, the script and the policy that allows only that script."""
    script = _asset("page.js")
    return environment().get_template(template).render(
        style=Markup(_asset("page.css")), script=Markup(script),
        csp=content_security_policy(script), **context)


def fragment(template, **context):
    """A piece of a page (Markup), for sections built in Python."""
    return Markup(environment().get_template(template).render(**context))


_SVG_REFERENCES = re.compile(r'(\bid="|url\(#|href="#)')
_SVG_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)


def svg(fig, prefix):
    """``fig`` as inline SVG markup. matplotlib names clip paths and glyphs by content, so two
    charts on one page could share ids: each chart's ids get ``prefix``."""
    from ..analysis.plots import to_svg

    text = to_svg(fig)
    text = text[text.index("<svg"):]  # inline: no XML declaration, no DOCTYPE
    text = _SVG_METADATA.sub("", text, count=1)  # matplotlib's RDF credits: bytes, no content
    return Markup(_SVG_REFERENCES.sub(lambda m: f"{m.group(1)}{prefix}-", text))
