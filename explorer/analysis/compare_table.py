"""A comparison as text or Markdown: figures as rows, specs as columns, a compact % beside each.

The comparison holds exact values; this module only formats them. Specs whose names do not fit
(or repeat) are labelled A, B, C... with a legend, so three or four specs fit 100 columns.
"""

from explorer.analysis.comparison import letter

WIDTH = 100  # the text table aims to fit this many columns
MAX_TEXT = 20  # characters of a string figure shown in a cell (the JSON output has it whole)


def format_value(value):
    """A figure for display: integers with thousands separators, floats to 6 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def format_delta(diff, pct):
    """The compact difference shown beside a value: ``-0.4%``, ``+12%``, ``+<0.001%``; the
    absolute difference where the first spec's value is 0; empty where there is none."""
    if diff is None or diff == 0:
        return ""
    sign = "+" if diff > 0 else "-"
    if pct is None:
        return sign + format_value(abs(diff))
    size = abs(pct)
    if size < 0.001:
        text = "<0.001"
    elif size < 10:
        text = f"{size:.2g}"  # two significant digits
    else:
        text = f"{size:,.0f}"
    return f"{sign}{text}%"


def _clip(text, width=MAX_TEXT):
    # Generated text can hold control bytes: show them escaped, as Python would.
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= width else text[:width - 1] + "…"


def _cell(value):
    return _clip(value) if isinstance(value, str) else format_value(value)


def _grid(rows):
    """Per row, per spec: (value text, delta text)."""
    return [[(_cell(v), format_delta(d, p) if i else "")
             for i, (v, d, p) in enumerate(zip(r["values"], r["delta"], r["delta_pct"]))]
            for r in rows]


def _widths(grid, n_specs):
    """Per spec: (value width, delta width)."""
    value_w = [max([len(row[i][0]) for row in grid] or [1]) for i in range(n_specs)]
    delta_w = [max([len(row[i][1]) for row in grid] or [0]) for i in range(n_specs)]
    return value_w, delta_w


def _column_width(value_w, delta_w, header):
    return max(value_w + (delta_w + 1 if delta_w else 0), len(header))


def _headers(result, name_width, value_w, delta_w):
    """The spec names if they are distinct and both tables still fit WIDTH, else A, B, C..."""
    names = result["specs"]
    figures = name_width + sum(2 + _column_width(v, d, n)
                               for v, d, n in zip(value_w, delta_w, names))
    differences = max(map(len, _difference_lines(result["spec_differences"], names)))
    if len(set(names)) == len(names) and max(figures, differences) <= WIDTH:
        return list(names), False
    return [letter(i) for i in range(len(names))], True


def _legend_lines(result, lettered):
    n = len(result["specs"])
    legend = [(letter(i) + "  " if lettered else "") + name
              for i, name in enumerate(result["specs"])]
    width = max(map(len, legend), default=0)
    lines = [f"comparing {n} spec{'s' * (n != 1)} (seed {result['seed']})"]
    lines.extend(f"  {entry:<{width}}  {source or ''}".rstrip()
                 for entry, source in zip(legend, result["sources"]))
    if result["not_run"]:
        lines.append(f"  not run (interrupted): {', '.join(result['not_run'])}")
    return lines


def _difference_lines(differences, headers):
    if not differences:
        return ["spec differences: none"]
    key_w = max(len("spec differences"), *(2 + len(key) for key in differences))
    cells = [[_cell(v) for v in values] for values in differences.values()]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    table = [["spec differences", *headers]] + [["  " + key, *row]
                                                 for key, row in zip(differences, cells)]
    return ["  ".join(c.ljust(w) for c, w in zip(row, [key_w, *widths])).rstrip()
            for row in table]


def _figure_lines(rows, grid, headers, name_width, value_w, delta_w):
    """The figures under a line naming their analysis; each value with its delta beside it."""
    widths = [_column_width(v, d, h) for v, d, h in zip(value_w, delta_w, headers)]

    def line(label, cells):
        return "  ".join([label.ljust(name_width), *cells]).rstrip()

    lines = [line("figure", [_header_cell(h, v, d, w)
                             for h, v, d, w in zip(headers, value_w, delta_w, widths)])]
    group = None
    for row, cells in zip(rows, grid):
        if row["analysis"] != group:
            group = row["analysis"]
            lines.append(group)
        lines.append(line("  " + row["figure"][len(group) + 1:],
                          [_format_cell(value, d, vw, dw, w) for (value, d), vw, dw, w
                           in zip(cells, value_w, delta_w, widths)]))
    return lines if rows else lines + ["(no figures)"]


def _format_cell(value, delta, value_w, delta_w, width):
    text = value.rjust(value_w) + (" " + delta.ljust(delta_w) if delta_w else "")
    return text.rjust(width)


def _header_cell(header, value_w, delta_w, width):
    # Over the value, right-aligned as the numbers are, when it fits there.
    if len(header) <= value_w:
        return (header.rjust(value_w) + " " * (delta_w + 1 if delta_w else 0)).rjust(width)
    return header.rjust(width)


def to_text(result, rows=None):
    """The comparison as text; ``rows`` (default: all of them) are the figures shown."""
    rows = result["rows"] if rows is None else rows
    grid = _grid(rows)
    value_w, delta_w = _widths(grid, len(result["specs"]))
    # Figures are listed under their analysis: "  key" rows below an "analysis" line.
    name_width = max([len("figure")] + [len(r["analysis"]) for r in rows]
                     + [2 + len(r["figure"]) - len(r["analysis"]) - 1 for r in rows])
    headers, lettered = _headers(result, name_width, value_w, delta_w)
    return "\n".join([*_legend_lines(result, lettered), "",
                      *_difference_lines(result["spec_differences"], headers), "",
                      *_figure_lines(rows, grid, headers, name_width, value_w, delta_w),
                      *_failure_lines(result, lettered)])


def _failure_lines(result, lettered):
    index = {name: i for i, name in enumerate(result["specs"])}
    lines = []
    for f in result["failures"]:
        who = f"{letter(index[f['spec']])} {f['spec']}" if lettered else f["spec"]
        what = f"{f['analysis']} FAILED" if f["analysis"] else "FAILED"
        lines.append(f"{who}: {what}: {f['message']}")
    return [""] + lines if lines else []


def to_markdown(result, rows=None):
    """The comparison as Markdown tables: spec differences, then figures (full names) as rows."""
    rows = result["rows"] if rows is None else rows
    names = result["specs"]
    lettered = len(set(names)) != len(names)
    headers = [letter(i) for i in range(len(names))] if lettered else names
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = [f"Comparing {', '.join(f'`{s}`' for s in names)} (seed {result['seed']})."]
    if lettered:
        lines.append("")
        lines.extend(f"- {letter(i)}: `{name}` ({source})" for i, (name, source)
                     in enumerate(zip(names, result["sources"])))
    lines.append("")
    if result["spec_differences"]:
        lines.append("| spec key | " + " | ".join(map(esc, headers)) + " |")
        lines.append("|---" * (len(names) + 1) + "|")
        lines.extend("| " + " | ".join(esc(c) for c in [key, *map(_cell, values)]) + " |"
                     for key, values in result["spec_differences"].items())
        lines.append("")
    lines.append("| figure | " + " | ".join(map(esc, headers)) + " |")
    lines.append("|---" + "|---:" * len(names) + "|")
    for row, cells in zip(rows, _grid(rows)):
        shown = [f"{value} ({d})" if d else value for value, d in cells]
        lines.append("| " + " | ".join(esc(c) for c in [row["figure"], *shown]) + " |")
    lines.extend(_failure_lines(result, lettered))
    return "\n".join(lines)


def spec_line(label, report, figures, seconds):
    """One line on a spec that has just finished: its time, failures, and the first figure of
    each analysis, as many as fit in WIDTH."""
    if report.get("error"):
        return f"{label}: FAILED: {report['error']}"
    failed = ", ".join(report["failures"])
    line = f"{label}: done in {seconds:.1f} s" + (f"; FAILED: {failed}" if failed else "")
    separator = ": "
    for analysis, values in figures.items():
        if not values:
            continue
        key = next(iter(values))
        part = f"{separator}{analysis}.{key} {_cell(values[key])}"
        if len(line) + len(part) > WIDTH:
            break
        line, separator = line + part, ", "
    return line
