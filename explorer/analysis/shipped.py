"""The specs explorer ships, listed with what each is (``explorer specs``).

Here, not beside the catalog that finds them by name (:mod:`explorer.spec.catalog`): counting a
spec's parameters builds its model, a layer above reading specs.
"""

from explorer.measure.costs import static_costs
from explorer.spec.catalog import SPECS, summary_line
from explorer.spec.loading import load_spec


def list_specs():
    """Every shipped spec: ``{"name", "title", "parameters", "description", "path"}``, by name.

    Parameters are counted on the meta device (no weights allocated), as the params analysis
    counts them, so the 175B spec answers as quickly as the tiny one.
    """
    rows = []
    for name, path in SPECS.names().items():
        spec = load_spec(path)
        rows.append({"name": name, "title": spec.name,
                     "parameters": static_costs(spec, 1)["parameters"],
                     "description": summary_line(path), "path": str(path)})
    return rows
