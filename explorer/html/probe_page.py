"""The page of a probe's capability profile (``explorer probe --html FILE``): the profile's
table (each cell with its exact value), the chart (a panel per task), the settings."""

import json

from .provenance import provenance as make_provenance
from .render import Page, data, render, sign
from .tables import Cell, Row, Table, table


def _profile_table(profile):
    """The text table's cells (same strings), each with its exact value."""
    from ..sweep.probe_report import table as text_table

    header, rows = text_table(profile)
    reference = profile["reference"]
    by_row = {}
    for cell in profile["cells"]:
        by_row.setdefault((cell["task"], json.dumps(cell["level"])), []).append(cell)
    out = []
    for texts, cells in zip(rows, by_row.values()):
        values, classes = [Cell(texts[1])], []  # the level; then a cell per text after it
        for cell in cells:
            best = cell["best"]
            values.append(Cell(texts[len(values) + 1], data(cell["score"]["mean"]), "num",
                               title=f"best lr {best['lr']}, weight decay {best['weight_decay']}"
                               if best else ""))
            if cell["spec"] != reference:
                delta = cell["delta"] or {}
                values.append(Cell(texts[len(values) + 1], data(delta.get("mean")),
                                   f"num delta {sign(delta.get('mean'))}".strip()))
                if delta.get("significant"):
                    classes.append("significant")
        out.append(Row(Cell(texts[0]), values, " ".join(sorted(set(classes))),
                       figure=f"{texts[0]} {texts[1]}"))
    return Table([Cell(h, cls="" if i < 2 else "num") for i, h in enumerate(header)], out,
                 id="profile", sortable=False)


def probe_page(profile, provenance=None):
    """The page of ``profile`` (:func:`explorer.sweep.probe_report.build_profile`'s dict)."""
    import yaml

    from ..sweep.probe_report import figure, summary_line
    from .render import svg

    problems, charts = [], []
    try:
        charts.append({"title": "score against difficulty, a line per spec (95% CI band)",
                       "svg": svg(figure(profile), "profile")})
    except Exception as exc:
        problems.append(f"probe chart raised {type(exc).__name__}: {exc}")
    provenance = provenance or make_provenance(seed=", ".join(map(str, profile["seeds"])),
                                               environment=profile.get("versions"))
    return Page(render("probe.html.j2", title=f"probe {profile['suite']}", kind="explorer probe",
                       profile=profile, summary=summary_line(profile),
                       table=table(_profile_table(profile)), charts=charts,
                       train=yaml.safe_dump(profile["train"], sort_keys=False).rstrip(),
                       provenance=provenance), problems)
