"""The specs explorer ships, listed with what each is (``explorer specs``).

Here, not beside the catalog that finds them by name (:mod:`explorer.spec.catalog`): counting a
spec's parameters builds its model, a layer above reading specs.
"""

import functools
import os

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
        title, parameters = _counted(str(path), os.stat(path).st_mtime_ns)
        rows.append({"name": name, "title": title, "parameters": parameters,
                     "description": summary_line(path), "path": str(path)})
    return rows


@functools.lru_cache(maxsize=None)
def _counted(path, mtime_ns):
    """A spec file's name and parameter count, once per version of the file in a process (a
    shipped model spec's count builds it on the meta device: tenths of a second each)."""
    spec = load_spec(path)
    return spec.name, static_costs(spec, 1)["parameters"]
