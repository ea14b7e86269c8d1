"""The spec-differences table of a compare page, a row per component kind that differs.

``spec_differences`` (the JSON's) lists dotted keys, so a component whose name changes brings
every parameter either name has: learned -> rope is a row for the name and ten rows of "-" for
RoPE's defaults. Here such a kind is one row: each spec's component name, beside it the
parameters that tell apart the specs using that same component (``gqa n_kv_heads=4`` and
``gqa n_kv_heads=1``), and, where the name differs from the first spec's, its other parameters
folded under it. A kind whose name is the same everywhere keeps a row per parameter that differs,
and so does every key outside ``components``.
"""

from .render import data, show
from .tables import Cell, Row, Table

COMPONENTS = "components."


def _kind(key):
    """The component kind of a dotted spec key, or None outside ``components``."""
    return key[len(COMPONENTS):].split(".", 1)[0] if key.startswith(COMPONENTS) else None


def _component(spec, kind):
    """``(name, {parameter: value})`` of a resolved spec's component (name None if absent)."""
    choice = (spec.get("components") or {}).get(kind)
    if not isinstance(choice, dict):
        return choice, {}
    return choice.get("name"), {k: v for k, v in choice.items() if k != "name"}


def _params_text(params):
    return " ".join(f"{key}={show(value)}" for key, value in params.items())


def component_cells(specs, kind):
    """A Cell per spec for component ``kind`` of the resolved ``specs`` (dicts)."""
    chosen = [_component(spec, kind) for spec in specs]
    first_name, first_params = chosen[0]
    cells = []
    for name, params in chosen:
        peers = [p for n, p in chosen if n == name]
        telling = {k: v for k, v in params.items()
                   if any(repr(p.get(k)) != repr(v) for p in peers)}
        text = " ".join(filter(None, [show(name) if name is not None else "-",
                                      _params_text(telling)]))
        folded = tuple((k, show(v)) for k, v in params.items()
                       if name != first_name and k not in telling)
        differs = name != first_name or any(repr(first_params.get(k)) != repr(v)
                                            for k, v in telling.items())
        cells.append(Cell(text, data(name), mark=len(cells) > 0 and differs, folded=folded))
    return cells


def differences_table(result):
    """The compare page's spec-differences Table (see the module's docstring)."""
    specs = [report["spec"] for report in result["reports"]]
    differences = result["spec_differences"]
    renamed = {_kind(key) for key in differences if _kind(key) and key.endswith(".name")}
    rows, done = [], set()
    for key, values in differences.items():
        kind = _kind(key)
        if kind in renamed:
            if kind not in done:
                done.add(kind)
                rows.append(Row(Cell(f"{COMPONENTS}{kind}"), component_cells(specs, kind)))
            continue
        rows.append(Row(Cell(key), [Cell(show(v), data(v),
                                         mark=i > 0 and repr(v) != repr(values[0]))
                                    for i, v in enumerate(values)]))
    return Table([Cell("spec key"), *(Cell(label) for label in result["labels"])], rows,
                 id="differences")
