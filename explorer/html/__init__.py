"""Reports as one self-contained HTML file, to share: ``--html FILE`` on build, compare, sweep.

    >>> import explorer, explorer.html
    >>> spec = explorer.load_spec("specs/tiny.yaml")
    >>> page = explorer.html.build_page(explorer.analyze(spec), spec.plugin_manager.registry())
    >>> page.write("tiny.html")     # atomically; page.html is the text, page.problems what failed

A page opens offline in any browser: styles and script inline, charts inline SVG, a
Content-Security-Policy that forbids every fetch, readable without JavaScript, with a print
stylesheet. Everything from input (spec names, plugin descriptions, generated text) is escaped:
templates are Jinja2 with autoescaping on. Each analysis presents its own section
(``Analysis.html``, else its figures and text) and its charts, so a plugin's analysis appears
with no change here. Importing this package does not import torch.
"""

from .pages import build_page, compare_page, sweep_page
from .provenance import provenance
from .render import Page
from .tables import figures_table, text_block

__all__ = ["Page", "build_page", "compare_page", "sweep_page", "provenance", "figures_table",
           "text_block"]
