"""``torch.compile`` for the training loop (``compile: true``) and ``explorer generate --compile``.

Compiling happens on a compiled model's first call, and it can fail there: no working C++
compiler, a Python torch.compile does not support, an op inductor cannot lower. Such a failure
becomes one :class:`ExplorerError` line naming the option to turn off, never a traceback.
Whether compiling pays depends on the run's length: benchmarks/run.py measures the compile
seconds against the time saved per step.
"""

import contextlib

from explorer.errors import ExplorerError


def compile_model(model, where, **options):
    """``torch.compile(model, **options)``, or one line saying why torch.compile is unavailable;
    ``where`` names the setting (``train.compile``, ``--compile``)."""
    import torch

    try:
        return torch.compile(model, **options)
    except Exception as exc:  # e.g. a Python version torch.compile does not support yet
        raise ExplorerError(f"{where}: torch.compile is not available here: "
                            f"{type(exc).__name__}: {first_line(exc)}; {_instead(where)}") from exc


@contextlib.contextmanager
def compile_errors(where):
    """Inside the block, a failure to compile is one :class:`ExplorerError` line."""
    from torch._dynamo.exc import TorchDynamoException

    try:
        yield
    except TorchDynamoException as exc:
        raise ExplorerError(f"{where}: torch.compile failed: {first_line(exc)}; "
                            f"{_instead(where)}") from exc


def first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _instead(where):
    return "run without --compile" if where.startswith("--") else "set compile: false"
