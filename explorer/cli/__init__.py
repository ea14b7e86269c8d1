"""The ``explorer`` command: a thin click layer over the Python API.

The group and the console entry point live here; each command lives in the module of its concern
(analyze, generate, weights, plugins, specs, sweep, probe), the options they share in :mod:`.options`. Torch is
imported only inside the commands that build models, so ``explorer --help`` is quick.
"""

import os
import sys

import click

from ..errors import ExplorerError, one_line
from . import analyze, generate, plugins, probe, specs, sweep, weights
from .generate import terminal_safe  # noqa: F401 - public: escapes a model's text for a terminal


@click.group()
@click.version_option(package_name="explorer")
def cli():
    """Explore GPT architectures: build a model from a YAML spec and analyse it.

    Example:

        explorer build specs/gpt2_small.yaml --only params,memory
    """


# The commands, by the module of their concern. Modules, not their functions, are imported here:
# ``from .sweep import sweep`` would hide the module explorer.cli.sweep behind the command.
cli.add_command(analyze.build)
cli.add_command(analyze.compare)
cli.add_command(generate.generate_text)
cli.add_command(weights.export)
cli.add_command(weights.spec_from_hf_command)
cli.add_command(plugins.list_plugins)
cli.add_command(specs.list_specs)
cli.add_command(sweep.sweep)
cli.add_command(probe.probe)


def main(argv=None):
    """Console entry point: user errors become one line and exit code 2, never a traceback."""
    try:
        args = sys.argv[1:] if argv is None else list(argv)
        # The arguments ride along for provenance: an HTML page records the command line.
        cli.main(args=args, prog_name="explorer", standalone_mode=False, obj={"argv": args})
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # click wraps Ctrl-C in Abort
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ExplorerError as exc:
        click.echo(f"Error: {one_line(exc)}", err=True)
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

