"""``explorer plugins``: every registered component, analysis, checkpoint format, config
converter and run tracker, and the plugins that failed to load or were blocked."""

import json

import click

from .options import format_option, manager_with_plugins, plugins_option


def _param_json(p):
    out = {"name": p.name, "type": p.type_name, "default": p.default, "help": p.help}
    if p.choices:
        out["choices"] = list(p.choices)
    if p.min is not None:
        out.update(min=p.min, exclusive_min=p.exclusive_min)
    if p.max is not None:
        out["max"] = p.max
    return out


@click.command(name="plugins")
@click.option("--kind", help="Only this kind (norm, attention, ..., tokenizer, task), "
                             "'analysis', 'checkpoint_format', 'config_converter' or 'tracker'.")
@format_option
@plugins_option
def list_plugins(kind, fmt, plugins):
    """List every registered component, analysis, checkpoint format and config converter,
    with parameters and provider.

    Example:

        explorer plugins --kind attention
    """
    from ..registry.components import REGISTERED_KINDS
    from ..errors import UnknownNameError
    from ..registry.plugin_manager import CONVERTER_KIND, FORMAT_KIND, TRACKER_KIND

    manager = manager_with_plugins(plugins)
    registry = manager.registry()
    kinds = (*REGISTERED_KINDS, "analysis", FORMAT_KIND, CONVERTER_KIND, TRACKER_KIND)
    if kind and kind not in kinds:
        raise UnknownNameError("kind", kind, kinds, where="--kind")
    entries = []
    def kind_order(item):
        (k, name), _ = item
        return REGISTERED_KINDS.index(k), name

    for (k, name), comp in sorted(registry.components.items(), key=kind_order):
        entries.append((k, name, comp, registry.provider[(k, name)]))
    for name, analysis in sorted(registry.analyses.items()):
        entries.append(("analysis", name, analysis, registry.provider[("analysis", name)]))
    for name, checkpoint_format in registry.formats.items():  # in detection order
        provider = registry.provider[(FORMAT_KIND, name)]
        entries.append((FORMAT_KIND, name, checkpoint_format, provider))
    for name, converter in sorted(registry.converters.items()):
        entries.append((CONVERTER_KIND, name, converter, registry.provider[(CONVERTER_KIND, name)]))
    for name, tracker in sorted(registry.trackers.items()):
        entries.append((TRACKER_KIND, name, tracker, registry.provider[(TRACKER_KIND, name)]))
    entries = [e for e in entries if not kind or e[0] == kind]
    broken = registry.broken

    if fmt == "json":
        click.echo(json.dumps({
            "components": [{
                "kind": k, "name": name, "description": item.description,
                "params": [_param_json(p) for p in getattr(item, "params", ())],
                **({"reads": item.detect is not None, "target": item.target}
                   if k == FORMAT_KIND else {}),
                **({"ignores": list(item.ignores), "ignores_when": item.ignores_when}
                   if k == CONVERTER_KIND else {}),
                **({"requires": list(item.requires), "installed": item.missing() is None,
                    "install": item.install} if k == TRACKER_KIND else {}),
                "plugin": prov.plugin, "distribution": prov.distribution,
            } for k, name, item, prov in entries],
            "broken": broken,
            "blocked": manager.blocked,
        }, indent=2))
        return
    current = None
    for k, name, item, prov in entries:
        if k != current:
            click.echo(f"\n{k}:")
            current = k
        click.echo(f"  {name:<16} {item.description}")
        if k == FORMAT_KIND:
            click.echo(f"      reads: {'yes' if item.detect else 'no'}; export: "
                       + (f"--to {item.target}" if item.target else "no"))
        if k == CONVERTER_KIND and (item.ignores or item.ignores_when):
            click.echo("      ignores: " + ", ".join([*item.ignores, *(
                f"{f} (at {json.dumps(v)})" for f, v in item.ignores_when.items())]))
        if k == TRACKER_KIND and item.requires:
            missing = item.missing()
            click.echo(f"      requires: {', '.join(item.requires)} ("
                       + (f"not installed: {item.install or 'pip install ' + missing})"
                          if missing else "installed)"))
        for p in getattr(item, "params", ()):
            choices = f" one of {', '.join(map(str, p.choices))}" if p.choices else ""
            bounds = f" ({p.range_text})" if p.range_text else ""
            click.echo(f"      {p.name}: {p.type_name} = {p.default!r}{choices}{bounds}  {p.help}")
        click.echo(f"      from {prov}")
    for name, reason in broken.items():
        click.echo(f"\nbroken plugin {name}: {reason}")
    for name in manager.blocked:
        click.echo(f"\nblocked plugin {name} (EXPLORER_DISABLE_PLUGINS)")
