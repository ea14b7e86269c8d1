"""Comparing specs: the same analyses on each, their headline figures side by side.

Each analysis says which flat figures it shows (``Analysis.figures``); compare prefixes them with
the analysis name and computes differences against the first spec from the exact values.
Rounding happens only when a figure is displayed (``explorer.analysis.compare_table``).
"""

import dataclasses
import fnmatch
import string

from explorer.analysis.runner import analyze, environment, select
from explorer.errors import ExplorerError
from explorer.spec.layers import pattern_texts


def same_seed(specs, seed=None):
    """The specs with one seed (default: the first spec's), so their samples and weights match."""
    seed = specs[0].seed if seed is None else seed
    return [dataclasses.replace(s, seed=seed) for s in specs]


def run_each(specs, only=None, weights=None, progress=None, device="cpu", dtype="float32"):
    """Yield each spec's report as soon as it is done, in order, each run on ``device`` in
    ``dtype`` (see :func:`explorer.analyze`).

    An ``ExplorerError`` for one spec (a refusal before its model is built, a checkpoint that
    does not fit it) fails that spec only: its report has no analyses and carries the message
    under ``error``; the next spec still runs. An analysis that fails is in the report's
    ``failures`` as for ``explorer build``. ``weights`` is an optional list with a checkpoint
    path (or None) per spec; ``progress(spec_index, analysis_name)`` is called after each analysis.
    """
    chosen_per_spec(specs, only)  # fail early, before any model is built, on an unknown name
    for i, spec in enumerate(specs):
        callback = (lambda name, i=i: progress(i, name)) if progress else None
        try:
            report = analyze(spec, only=only, progress=callback,
                             weights=weights[i] if weights else None, device=device, dtype=dtype)
        except ExplorerError as exc:
            report = failed_report(spec, str(exc), device, dtype)
        except MemoryError:
            report = failed_report(spec, f"{spec.source or spec.name}: out of memory", device,
                                   dtype)
        yield report


def chosen_per_spec(specs, only=None):
    """The analyses each spec runs: ``only`` looked up in each spec's own registry (the
    installed plugins, ``-p``/``--plugin`` and the spec's ``plugins:``), or its default set.
    A name a spec's registry lacks is one :class:`ExplorerError` naming that spec."""
    chosen = []
    for spec in specs:
        try:
            chosen.append(select(spec.plugin_manager.registry(), only))
        except ExplorerError as exc:
            raise ExplorerError(f"{spec.source or spec.name}: {exc}") from None
    return chosen


def failed_report(spec, message, device="cpu", dtype="float32"):
    """The report of a spec that failed before any analysis ran."""
    return {"spec": spec.to_dict(), "source": spec.source, "components": {},
            "environment": environment(device, dtype), "analyses": {}, "failures": {},
            "skipped": {}, "warnings": [], "error": message}


def spec_differences(dicts):
    """The dotted keys whose values differ between resolved specs: {key: [value per spec]}.

    A ``layers:`` list shows as its pattern per kind (``layers.attention: 0,2 gqa window=0;
    1,3 gqa window=4``), not as the entries' full text."""
    flat = [_flatten({**d, "layers": pattern_texts(d)} if d.get("layers") else d) for d in dicts]
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


def analyses_of(specs, reports):
    """{analysis name: Analysis} for every analysis with a result, in report order; each from the
    registry of the first spec that ran it (each spec may load its own plugins)."""
    found = {}
    for spec, report in zip(specs, reports):
        registry = spec.plugin_manager.registry()
        for name in report["analyses"]:
            if name not in found and name in registry.analyses:
                found[name] = registry.analyses[name]
    return found


_FIGURE_TYPES = (int, float, str, type(None))  # bool is an int


def report_figures(spec, report):
    """One spec's figures, ``{analysis: {key: value}}``, and ``{analysis: message}`` for the
    analyses whose ``figures`` raised or returned something that is not flat."""
    registry = spec.plugin_manager.registry()
    figures, failures = {}, {}
    for name, result in report["analyses"].items():
        analysis = registry.analyses.get(name)
        if analysis is None or not isinstance(result, dict):
            continue
        provider = registry.provider[("analysis", name)].plugin
        try:
            figures[name] = checked_figures(analysis, result)
        except Exception as exc:
            failures[name] = (f"figures of analysis {name!r} (plugin {provider}) failed: "
                              f"{type(exc).__name__}: {exc}")
    return figures, failures


def checked_figures(analysis, result):
    """``analysis.figures_of(result)``, checked to be flat (a TypeError says what is not)."""
    flat = analysis.figures_of(result)
    if not isinstance(flat, dict):
        raise TypeError(f"returned {type(flat).__name__}, expected a dict")
    bad = next((k for k, v in flat.items() if not isinstance(v, _FIGURE_TYPES)), None)
    if bad is not None:
        raise TypeError(f"figure {bad!r} is a {type(flat[bad]).__name__}; figures are "
                        "numbers, strings or booleans")
    return flat


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def delta(value, base):
    """``(value - base, percent of base)`` from exact values; None where it has no meaning."""
    if not (_number(value) and _number(base)):
        return None, None
    diff = value - base
    return diff, (100.0 * diff / base if base else None)


def labels(names):
    """A label per spec for legends: the names, or ``A name``, ``B name`` where names repeat."""
    if len(set(names)) == len(names):
        return list(names)
    return [f"{letter(i)} {name}" for i, name in enumerate(names)]


def letter(i):
    """A, B, ..., Z, AA, AB, ...: the short label of the i-th spec."""
    text = ""
    i += 1
    while i:
        i, rest = divmod(i - 1, 26)
        text = string.ascii_uppercase[rest] + text
    return text


def merged_order(sequences):
    """Every item of ``sequences`` once, in an order each sequence agrees with where it can: the
    first sequence's order, and an item only later ones have placed after the item it follows
    there (after what earlier sequences put in that place), or first if it comes first."""
    merged = []
    for sequence in sequences:
        own, previous = set(sequence), None
        for item in sequence:
            if item not in merged:
                at = merged.index(previous) + 1 if previous is not None else 0
                while at < len(merged) and merged[at] not in own:
                    at += 1  # past what earlier sequences inserted here
                merged.insert(at, item)
            previous = item
    return merged


def tabulate(specs, reports):
    """The comparison of ``reports`` (one per spec, in order; fewer when interrupted).

    Returns ``{"specs", "labels", "sources", "seed", "spec_differences", "rows", "failures",
    "not_run", "reports"}``. Each row is ``{"figure", "analysis", "values", "delta",
    "delta_pct"}``, differences against the first spec. Each failure is ``{"spec", "analysis",
    "message"}``, ``analysis`` None when the whole spec failed.
    """
    done = specs[:len(reports)]
    names = [s.name for s in done]
    per_spec, failures, figures_per_spec = [], [], []
    for spec, name, report in zip(done, names, reports):
        figures, figure_failures = report_figures(spec, report)
        figures_per_spec.append(figures)
        per_spec.append({f"{analysis}.{key}": value for analysis, values in figures.items()
                         for key, value in values.items()})
        if report.get("error"):
            failures.append({"spec": name, "analysis": None, "message": report["error"]})
        for analysis, message in {**report["failures"], **figure_failures}.items():
            failures.append({"spec": name, "analysis": analysis, "message": message})
    # Each analysis's figures stay together: one only some specs have sits among its own
    # analysis's, where those specs put it, not after every analysis.
    keys = {f"{analysis}.{key}": analysis
            for analysis in merged_order([list(f) for f in figures_per_spec])
            for key in merged_order([list(f.get(analysis, ())) for f in figures_per_spec])}
    rows = []
    for key, analysis in keys.items():
        values = [flat.get(key) for flat in per_spec]
        deltas = [delta(v, values[0]) for v in values]
        rows.append({"figure": key, "analysis": analysis, "values": values,
                     "delta": [d for d, _ in deltas], "delta_pct": [p for _, p in deltas]})
    return {
        "specs": names,
        "labels": labels(names),
        "sources": [s.source for s in done],
        "seed": specs[0].seed,
        "spec_differences": spec_differences([s.to_dict() for s in done]),
        "rows": rows,
        "failures": failures,
        "not_run": [s.name for s in specs[len(reports):]],
        "reports": reports,
    }


def patterns(figures):
    """``--figures`` values (each may hold several, comma-separated) as a list of patterns."""
    if isinstance(figures, str):
        figures = [figures]
    return [p.strip() for item in figures or () for p in item.split(",") if p.strip()]


def matches(figure, pattern):
    """fnmatch-style, case-sensitive; a pattern also picks the figures below it, so ``params``
    picks ``params.total`` and ``memory.weights_mb`` picks ``memory.weights_mb.fp32``."""
    return fnmatch.fnmatchcase(figure, pattern) or fnmatch.fnmatchcase(figure, pattern + ".*")


def pick(rows, chosen):
    """The rows whose figure matches one of the ``chosen`` patterns (all rows when none)."""
    if not chosen:
        return rows
    return [r for r in rows if any(matches(r["figure"], p) for p in chosen)]


def unmatched(rows, chosen):
    """The patterns that pick no row."""
    return [p for p in chosen if not any(matches(r["figure"], p) for r in rows)]


def compare(specs, only=None, seed=None, weights=None, figures=None, progress=None,
            device="cpu", dtype="float32"):
    """Run the same analyses on every spec, with one seed (default: the first spec's).

    ``weights`` is an optional list with a checkpoint path (or None) per spec. ``figures``: a
    pattern or a list of patterns (fnmatch, e.g. ``"memory.*"``) that keep only the rows they
    match. ``device`` and ``dtype`` as for :func:`explorer.analyze` (a device torch cannot use
    is refused before any spec runs). One spec's failure is recorded under ``failures`` and the
    others still run. Returns the dict :func:`tabulate` describes.
    """
    from explorer.training.devices import resolve_device, resolve_dtype

    device, dtype = resolve_device(str(device)), resolve_dtype(dtype)
    specs = same_seed(specs, seed)
    result = tabulate(specs, list(run_each(specs, only, weights, progress, device, dtype)))
    result["rows"] = pick(result["rows"], patterns(figures))
    return result
