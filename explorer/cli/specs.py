"""``explorer specs``: the specs and sweep files explorer ships, which commands take by name."""

import click

from .options import emit, format_option


def _specs_text(rows):
    width = max(len(row["name"]) for row in rows)
    return "\n".join(f"{row['name']:<{width}}  {row['parameters']:>17,}  {row['description']}"
                     for row in rows)


def _sweeps_text(rows):
    width = max(len(row["name"]) for row in rows)
    return "\n".join(f"{row['name']:<{width}}  {row['runs']:>4} runs  {row['description']}"
                     for row in rows)


@click.command(name="specs")
@click.option("--sweeps", "sweeps", is_flag=True,
              help="List the shipped sweep files instead (explorer sweep NAME).")
@format_option
def list_specs(sweeps, fmt):
    """List the shipped specs (name, parameters, what it is); every command takes a name in
    place of a path, from any folder.

    Example:

        explorer specs
        explorer build models/llama3_8b --only params
    """
    import json

    if sweeps:
        from ..sweep import list_sweeps

        rows = list_sweeps()
    else:
        from ..analysis.shipped import list_specs as shipped_specs

        rows = shipped_specs()
    if fmt == "json":
        emit(json.dumps(rows, indent=2), None)
    else:
        emit((_sweeps_text if sweeps else _specs_text)(rows), None)
