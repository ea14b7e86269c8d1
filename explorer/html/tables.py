"""Tables as data for the ``table`` macro: each cell carries the text the reports show and,
for figures, the exact value (``data-value``, JSON) that sorting and tests read.

A table reads in report order without JavaScript; ``sortable`` ones get header buttons from the
page's script. A ``page_size`` table longer than that comes with its rows past the first page
hidden: the script shows them a page at a time (or all), and without the script a rule of the
page shows them all.
"""

from dataclasses import dataclass, field

from .render import data, fragment, show


@dataclass
class Cell:
    text: str
    value: str | None = None  # the exact value as JSON, for data-value; None: no attribute
    cls: str = ""  # CSS classes: num, text, pos, neg, incomplete, ...
    title: str = ""  # a tooltip: the exact difference, a full label
    mark: bool = False  # highlighted (<mark>): a value that differs from the first spec's
    folded: tuple = ()  # (name, text) pairs shown under the text, folded (<details>)


@dataclass
class Row:
    head: Cell  # the row's header cell (<th scope="row">)
    cells: list
    cls: str = ""
    figure: str = ""  # data-figure: the figure's full name, where the row is one figure


@dataclass
class Table:
    header: list  # of Cell
    rows: list = field(default_factory=list)
    caption: str = ""
    id: str = ""
    sortable: bool = False
    page_size: int = 0  # rows shown at a time (longer tables only); 0: every row

    @property
    def paged(self):
        return 0 < self.page_size < len(self.rows)


def figure_cell(value, mark=False):
    """A figure as the reports show it, with its exact value."""
    text_like = isinstance(value, str)
    return Cell(show(value), data(value), "text" if text_like else "num", mark=mark)


def figures_table(figures, prefix="", caption=""):
    """``{name: value}`` as a two-column table (Markup); ``prefix`` (an analysis name) makes
    each row's ``data-figure`` the figure's full name, as compare and the JSON report spell it."""
    rows = [Row(Cell(name), [figure_cell(value)], figure=f"{prefix}.{name}" if prefix else name)
            for name, value in figures.items()]
    return table(Table([Cell("figure"), Cell("value", cls="num")], rows, caption,
                       sortable=False))


def table(model):
    """A :class:`Table` as Markup."""
    return fragment("table.html.j2", table=model)


def text_block(text):
    """Preformatted text (Markup, escaped), as the text report prints it."""
    return fragment("text.html.j2", text=text)
