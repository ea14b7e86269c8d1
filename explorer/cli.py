"""The ``explorer`` command: a thin click layer over the Python API.

Torch is imported only inside the commands that build models, so ``explorer --help`` is quick.
"""

import json
import os
import sys

import click

from .errors import ExplorerError


class UserError(click.ClickException):
    """A one-line error about the user's input; exit code 2, no traceback."""

    exit_code = 2


def _plugins_option(f):
    return click.option(
        "-p", "--plugin", "plugins", multiple=True, metavar="MODULE|FILE.py",
        help="Load a plugin module (or a .py file) in addition to the installed ones. Repeatable.",
    )(f)


def _format_option(f):
    return click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                         show_default=True, help="Output format.")(f)


def _manager(plugins):
    from .plugin_manager import get_plugin_manager

    return get_plugin_manager(plugins=plugins)


def _warn_broken(manager):
    for name, reason in manager.registry().broken.items():
        click.echo(f"warning: plugin {name} skipped: {reason}", err=True)


@click.group()
@click.version_option(package_name="explorer")
def cli():
    """Explore GPT architectures: build a model from a YAML spec and analyse it.

    Example:

        explorer build specs/gpt2_small.yaml --only params,memory
    """


@cli.command()
@click.argument("spec_path", metavar="SPEC")
@click.option("--only", metavar="A,B", help="Run only these analyses (comma-separated).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key for this run, e.g. components.norm=layernorm. Repeatable.")
@_format_option
@_plugins_option
def build(spec_path, only, overrides, fmt, plugins):
    """Build the model SPEC describes and report on it.

    Example:

        explorer build specs/gpt2_small.yaml --set model.n_layers=2 --format json
    """
    from .spec import load_spec

    manager = _manager(plugins)
    spec = load_spec(spec_path, overrides=overrides, plugins=manager)
    _warn_broken(manager)
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None

    from .analysis import analyze  # imports torch

    report = analyze(spec, only=names)
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        from .report import to_text

        registry = manager.registry()
        renderers = {name: registry.analyses[name].load_render() for name in report["analyses"]}
        click.echo(to_text(report, renderers))
    if report["failures"]:
        for name, message in report["failures"].items():
            click.echo(f"error: {message}", err=True)
        sys.exit(1)


class _Progress:
    """One bar per spec on stderr, advanced per analysis; silent unless stderr is a terminal."""

    def __init__(self, names, n_analyses, enabled):
        self.names, self.n, self.enabled = names, n_analyses, enabled
        self.done = {}

    def __call__(self, spec_index, analysis):
        if not self.enabled:
            return
        k = self.done[spec_index] = self.done.get(spec_index, 0) + 1
        width = 20
        filled = int(width * k / max(1, self.n))
        line = (f"\r{self.names[spec_index][:24]:<24} [{'#' * filled}{'.' * (width - filled)}] "
                f"{k}/{self.n} {analysis:<12}")
        click.echo(line, nl=k >= self.n, err=True)


@cli.command()
@click.argument("spec_paths", metavar="SPEC...", nargs=-1, required=True)
@click.option("--only", metavar="A,B", help="Run only these analyses (comma-separated).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec key in every spec, e.g. model.n_layers=2. Repeatable.")
@click.option("--seed", type=int, help="The seed for every spec (default: the first spec's).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table",
              show_default=True, help="Output format.")
@click.option("--plots", "plots_dir", metavar="DIR", help="Write PNG charts into DIR.")
@_plugins_option
def compare(spec_paths, only, overrides, seed, fmt, plots_dir, plugins):
    """Run the same analyses on every SPEC and print them side by side.

    Differences are against the first spec, absolute and in %; the spec keys that differ are
    listed above the table.

    Example:

        explorer compare specs/gpt2_small.yaml specs/ablations/tied.yaml --only params,memory
    """
    from .spec import load_spec

    manager = _manager(plugins)
    specs = [load_spec(path, overrides=overrides, plugins=manager) for path in spec_paths]
    _warn_broken(manager)
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None

    from .analysis import select
    from .compare import compare as run_compare, to_markdown, to_text

    n_analyses = len(select(manager.registry(), names))
    progress = _Progress([s.name for s in specs], n_analyses,
                         enabled=fmt != "json" and sys.stderr.isatty())
    result = run_compare(specs, only=names, seed=seed, progress=progress)
    if plots_dir:
        from .plots import write_plots

        result["plots"] = write_plots(result, plots_dir)
    if fmt == "json":
        click.echo(json.dumps(result, indent=2))
    elif fmt == "markdown":
        click.echo(to_markdown(result))
    else:
        click.echo(to_text(result))
        for path in result.get("plots", []):
            click.echo(f"wrote {path}")
    failures = [m for r in result["reports"] for m in r["failures"].values()]
    for message in failures:
        click.echo(f"error: {message}", err=True)
    if failures:
        sys.exit(1)


@cli.command(name="plugins")
@click.option("--kind", help="Only this kind (norm, attention, ..., tokenizer), or 'analysis'.")
@_format_option
@_plugins_option
def list_plugins(kind, fmt, plugins):
    """List every registered component and analysis, with parameters and provider.

    Example:

        explorer plugins --kind attention
    """
    from .components import REGISTERED_KINDS
    from .plugin_manager import unknown_name_message

    manager = _manager(plugins)
    registry = manager.registry()
    kinds = (*REGISTERED_KINDS, "analysis")
    if kind and kind not in kinds:
        raise UserError("--kind: " + unknown_name_message("kind", kind, list(kinds)))
    entries = []
    for (k, name), comp in sorted(registry.components.items(),
                                  key=lambda item: (REGISTERED_KINDS.index(item[0][0]), item[0][1])):
        entries.append((k, name, comp, registry.provider[(k, name)]))
    for name, analysis in sorted(registry.analyses.items()):
        entries.append(("analysis", name, analysis, registry.provider[("analysis", name)]))
    entries = [e for e in entries if not kind or e[0] == kind]
    broken = registry.broken

    if fmt == "json":
        click.echo(json.dumps({
            "components": [{
                "kind": k, "name": name, "description": item.description,
                "params": [{"name": p.name, "type": p.type_name, "default": p.default,
                            "help": p.help, **({"choices": list(p.choices)} if p.choices else {})}
                           for p in item.params],
                "plugin": prov.plugin, "distribution": prov.distribution,
            } for k, name, item, prov in entries],
            "broken": broken,
            "blocked": sorted(manager.blocked),
        }, indent=2))
        return
    current = None
    for k, name, item, prov in entries:
        if k != current:
            click.echo(f"\n{k}:")
            current = k
        click.echo(f"  {name:<16} {item.description}")
        for p in item.params:
            choices = f" one of {', '.join(map(str, p.choices))}" if p.choices else ""
            click.echo(f"      {p.name}: {p.type_name} = {p.default!r}{choices}  {p.help}")
        click.echo(f"      from {prov}")
    for name, reason in broken.items():
        click.echo(f"\nbroken plugin {name}: {reason}")
    for name in sorted(manager.blocked):
        click.echo(f"\nblocked plugin {name} (EXPLORER_DISABLE_PLUGINS)")


def main(argv=None):
    """Console entry point: user errors become one line and exit code 2, never a traceback."""
    try:
        cli.main(args=argv, prog_name="explorer", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ExplorerError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except MemoryError:
        click.echo("Error: out of memory; try a smaller spec or --only params,memory", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("EXPLORER_DEBUG"):
            raise
        click.echo(f"Error: internal error: {type(exc).__name__}: {exc} "
                   "(set EXPLORER_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
    sys.exit(0)
