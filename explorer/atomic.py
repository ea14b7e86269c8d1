"""Writing output files atomically: to a temporary name beside the target, then a rename.

An interrupted run (Ctrl-C, a crash, a full disk) never leaves a truncated file behind.
"""

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def _plain_open_mode(path):
    """The mode ``open(path, "w")`` would leave: an existing file keeps its own, a new one gets
    0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)  # the only way to read the umask is to set it
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, else it is removed.

    The mode is set after the writer is done, not when the temporary file is made: a writer
    may replace the file (safetensors' ``save_file`` does), and the new one would keep
    ``mkstemp``'s 0600.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _plain_open_mode(path))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)
