"""Comparing specs: the same analyses on each, one table of figures with differences to the first."""

import dataclasses

from .analysis import analyze, select

# Result keys too detailed for a side-by-side table (they stay in each report and in the plots).
DETAIL_KEYS = {"per_matrix", "per_block", "samples", "curve", "modules", "conventions", "train_curve",
               "val_curve", "tree"}


def spec_differences(dicts):
    """The dotted keys whose values differ between resolved specs: {key: [value per spec]}."""
    flat = [_flatten(d) for d in dicts]
    keys = []
    for f in flat:
        keys.extend(k for k in f if k not in keys)
    return {k: [f.get(k) for f in flat] for k in keys
            if k != "name" and len({repr(f.get(k)) for f in flat}) > 1}


def _flatten(node, prefix=""):
    out = {}
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def figures(result, prefix, depth=2):
    """Headline figures of one analysis result: numbers and short strings, nested dicts to ``depth``."""
    out = {}
    for key, value in result.items():
        if key in DETAIL_KEYS:
            continue
        dotted = f"{prefix}.{key}"
        if isinstance(value, dict) and depth > 1:
            out.update(figures(value, dotted, depth - 1))
        elif isinstance(value, bool) or isinstance(value, str) and len(value) <= 40:
            out[dotted] = value
        elif isinstance(value, (int, float)):
            out[dotted] = value
    return out


def _delta(value, base):
    numeric = (isinstance(value, (int, float)) and isinstance(base, (int, float))
               and not isinstance(value, bool) and not isinstance(base, bool))
    if not numeric:
        return None, None
    diff = value - base
    return diff, (100.0 * diff / base if base else None)


def compare(specs, only=None, seed=None, progress=None, weights=None):
    """Run the same analyses on every spec, with one seed (default: the first spec's).

    ``weights`` is an optional list with a checkpoint path (or None) per spec.
    Returns ``{"specs", "sources", "seed", "spec_differences", "rows", "reports"}``; each row is
    ``{"figure", "values", "delta", "delta_pct"}`` with the differences against the first spec.
    ``progress(spec_index, analysis_name)`` is called after each analysis.
    """
    seed = specs[0].seed if seed is None else seed
    specs = [dataclasses.replace(s, seed=seed) for s in specs]
    for s in specs:  # fail early, before any model is built, on an unknown analysis name
        select(s.plugin_manager.registry(), only)
    reports = []
    for i, spec in enumerate(specs):
        callback = (lambda name, i=i: progress(i, name)) if progress else None
        reports.append(analyze(spec, only=only, progress=callback,
                               weights=weights[i] if weights else None))

    names = []
    for report in reports:
        names.extend(n for n in report["analyses"] if n not in names)
    per_spec = []
    for report in reports:
        flat = {}
        for name in names:
            if name in report["analyses"]:
                flat.update(figures(report["analyses"][name], name))
        per_spec.append(flat)
    keys = []
    for flat in per_spec:
        keys.extend(k for k in flat if k not in keys)
    rows = []
    for key in keys:
        values = [flat.get(key) for flat in per_spec]
        deltas = [_delta(v, values[0]) for v in values]
        rows.append({"figure": key, "values": values,
                     "delta": [d for d, _ in deltas], "delta_pct": [p for _, p in deltas]})
    return {
        "specs": [s.name for s in specs],
        "sources": [s.source for s in specs],
        "seed": seed,
        "spec_differences": spec_differences([s.to_dict() for s in specs]),
        "rows": rows,
        "reports": reports,
    }


# -- rendering ---------------------------------------------------------------------------------

def _fmt(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def _fmt_delta(delta, pct):
    if delta is None or delta == 0:
        return ""
    sign = "+" if delta > 0 else ""
    text = f"{sign}{_fmt(delta)}"
    return f"{text} ({sign}{pct:.1f}%)" if pct is not None else text


def _cells(result):
    header = ["figure"]
    for i, name in enumerate(result["specs"]):
        header.append(name)
        if i:
            header.append(f"Δ vs {result['specs'][0]}")
    body = []
    for row in result["rows"]:
        cells = [row["figure"]]
        for i, value in enumerate(row["values"]):
            cells.append(_fmt(value))
            if i:
                cells.append(_fmt_delta(row["delta"][i], row["delta_pct"][i]))
        body.append(cells)
    diffs = [[key, *[_fmt(v) for v in values]] for key, values in result["spec_differences"].items()]
    return header, body, diffs


def to_text(result):
    header, body, diffs = _cells(result)
    lines = [f"comparing {', '.join(result['specs'])} (seed {result['seed']})", ""]
    lines.append("spec differences:" if diffs else "spec differences: none")
    width = max((len(d[0]) for d in diffs), default=0)
    for d in diffs:
        lines.append(f"  {d[0]:<{width}}  " + "  |  ".join(d[1:]))
    lines.append("")
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    align = lambda cells: "  ".join(  # noqa: E731 - figures left, numbers right
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    lines.append(align(header))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(align(r) for r in body)
    failures = [(result["specs"][i], n, m) for i, r in enumerate(result["reports"])
                for n, m in r["failures"].items()]
    for spec, name, message in failures:
        lines.append(f"{spec}: {name} FAILED: {message}")
    return "\n".join(lines)


def to_markdown(result):
    header, body, diffs = _cells(result)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = [f"Comparing {', '.join(f'`{s}`' for s in result['specs'])} (seed {result['seed']}).", ""]
    if diffs:
        lines.append("| spec key | " + " | ".join(result["specs"]) + " |")
        lines.append("|---" * (len(result["specs"]) + 1) + "|")
        lines.extend("| " + " | ".join(esc(c) for c in d) + " |" for d in diffs)
        lines.append("")
    lines.append("| " + " | ".join(esc(c) for c in header) + " |")
    lines.append("|---" + "|---:" * (len(header) - 1) + "|")
    lines.extend("| " + " | ".join(esc(c) for c in r) + " |" for r in body)
    return "\n".join(lines)
