"""What the ``explorer`` commands share: the one-line user error, the reusable click options,
--out and --html writing, --device resolution and the plugin manager a command runs with.

Nothing here imports torch; the helpers that need it import it when called.
"""

import json

import click

from ..errors import PluginError


class UserError(click.ClickException):
    """A one-line error about the user's input; exit code 2, no traceback."""

    exit_code = 2


def check_seed(ctx, param, value):
    """A ``--seed`` checked as a spec's ``seed:`` is (0 to 2**63-1), in one line."""
    if value is None:
        return None
    from ..errors import ParamError
    from ..spec.config import SEED

    try:
        return SEED.check(value)
    except ParamError as exc:
        raise UserError(f"--seed: {exc}") from None


def plugins_option(f):
    return click.option(
        "-p", "--plugin", "plugins", multiple=True, metavar="MODULE|FILE.py",
        help="Load a plugin module (or a .py file) in addition to the installed ones. Repeatable.",
    )(f)


def format_option(f):
    return click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                         show_default=True, help="Output format.")(f)


def out_option(f):
    return click.option("--out", "out_path", metavar="FILE",
                        help="Write the output to FILE (atomically) instead of stdout.")(f)


def emit(text, out_path):
    """Print, or write to --out through a temporary file and a rename (never a partial file)."""
    if out_path:
        from ..atomic import write_text

        try:
            write_text(out_path, text + "\n")
        except OSError as exc:
            raise UserError(f"--out {out_path}: cannot write: {exc.strerror or exc}") from None
    else:
        click.echo(text)


def html_option(f):
    return click.option("--html", "html_path", metavar="FILE",
                        help="Also write the report as one self-contained HTML page to FILE "
                             "(opens offline in any browser; charts inline).")(f)


def check_html_path(path):
    """Refuse an --html FILE that cannot be written, before the report runs for minutes."""
    if not path:
        return
    from pathlib import Path

    target = Path(path)
    if target.is_dir():
        raise UserError(f"--html {path}: is a directory; give a file name, e.g. "
                        f"{target / 'report.html'}")
    if not target.parent.is_dir():
        raise UserError(f"--html {path}: folder {target.parent} does not exist")


def write_html(page, path):
    """Write an HTML page (explorer.html.Page) atomically; say where, and what failed in it.
    Returns True when every part of the page could be drawn."""
    try:
        page.write(path)
    except OSError as exc:
        raise UserError(f"--html {path}: cannot write: {exc.strerror or exc}") from None
    click.echo(f"wrote {path}", err=True)
    for problem in page.problems:
        click.echo(f"error: --html: {problem}", err=True)
    return not page.problems


def this_command_line():
    """This run's command line, for a page's provenance."""
    from ..html.provenance import command_line

    root = click.get_current_context().find_root()
    return command_line(root.obj.get("argv") if isinstance(root.obj, dict) else None)


def weights_option(f):
    return click.option(
        "--weights", metavar="PATH",
        help="Load weights: a Hugging Face GPT-2 directory or file (model.safetensors, "
             "pytorch_model.bin), a book model.pth, an explorer checkpoint, or any format a "
             "plugin registers.",
    )(f)


def ignore_config_option(f):
    return click.option(
        "--ignore-config-field", "ignore_fields", multiple=True, metavar="NAME",
        help="Read this field of a Hugging Face config.json (SPEC's, or the one beside "
             "--weights) as if it were absent: for a field explorer does not know and that "
             "does not change the model. Repeatable.")(f)


def spec_and_weights(spec_path, overrides, manager, weights, ignore_fields=()):
    """SPEC is a YAML spec, an explorer checkpoint (.safetensors) that carries its spec and
    supplies the weights unless --weights is given, or a Hugging Face config.json (or the
    folder holding it). ``ignore_fields``: --ignore-config-field."""
    if spec_path.endswith(".safetensors"):
        from ..weights import spec_from_checkpoint

        return (spec_from_checkpoint(spec_path, overrides, manager, ignore_fields),
                weights or spec_path)
    from ..spec.hf_config import is_hf_config, spec_from_hf

    if is_hf_config(spec_path):
        return spec_from_hf(spec_path, overrides, manager, ignore_fields), weights
    from ..spec.loading import load_spec

    return load_spec(spec_path, overrides=overrides, plugins=manager,
                     ignore_config_fields=ignore_fields), weights


def device_options(dtype_help):
    """``--device`` and ``--dtype``: names checked at once (no torch), the device resolved
    against this torch before anything is built (:func:`torch_device`)."""
    from ..training.devices import DTYPE_NAMES

    def add(f):
        f = click.option("--dtype", type=click.Choice(DTYPE_NAMES), default="float32",
                         show_default=True, help=dtype_help)(f)
        return click.option(
            "--device", default="cpu", show_default=True, metavar="auto|cpu|cuda[:N]|mps",
            help="Where the model and its tensors live; auto picks cuda, then mps, then cpu. "
                 "A device this torch cannot use is refused before anything is built.")(f)
    return add


MIXED_PRECISION = ("What forwards compute in: float32, or bfloat16 / float16 mixed precision "
                   "(float32 weights and optimizer state, autocast forwards, float16 with a "
                   "gradient scaler in training).")


def torch_device(name):
    """The ``torch.device`` for ``--device`` (imports torch unless the name is misspelt), or
    exit 2 with one line."""
    from ..training.devices import resolve_device

    return resolve_device(name)


def corpus_option(f):
    return click.option("--corpus", metavar="FILE",
                        help="Text file for the train analysis (sets analyses.train.corpus).")(f)


def with_corpus(overrides, corpus):
    # JSON-quoted, so the path survives being read back as YAML whatever it contains.
    return (*overrides, f"analyses.train.corpus={json.dumps(corpus)}") if corpus else overrides


def manager_with_plugins(plugins):
    """A fresh plugin manager with the -p/--plugin plugins, which must load: the user named them."""
    from ..registry.plugin_manager import get_plugin_manager

    manager = get_plugin_manager()  # a broken built-in is its own error, not --plugin's
    try:
        for plugin in plugins:
            manager.load(plugin)
    except PluginError as exc:
        raise UserError(f"--plugin: {exc}") from None
    return manager


def only_option(f):
    return click.option("--only", metavar="A,B",
                        help="Run only these analyses (comma-separated).")(f)


def only_names(only):
    """``--only a,b`` as a list of names, or None (no --only) for the default set.

    The names are checked later, against the registry of each spec once its own ``plugins:``
    are loaded (:func:`explorer.analysis.runner.select`). ``--only ''`` (or ``--only ,``) names
    nothing: refused, rather than read as "no --only" and running every default analysis.
    """
    if only is None:
        return None
    names = [n.strip() for n in only.split(",") if n.strip()]
    if not names:
        raise UserError(f"--only {only!r}: names no analysis; give one or more, comma-separated, "
                        "e.g. --only params,memory (explorer plugins --kind analysis lists them)")
    return names


def warn_broken(*managers):
    """Warn once about each installed plugin that failed (several managers see the same ones)."""
    seen = set()
    for manager in managers:
        for name, reason in manager.registry().broken.items():
            if (name, reason) not in seen:
                seen.add((name, reason))
                click.echo(f"warning: plugin {name}: {reason}", err=True)
