"""Writing weight files: through a temporary file and a rename, never a truncated file."""

from pathlib import Path

from ..atomic import atomic_path


def atomic_write(path, write):
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``: an
    interrupted run leaves the old file (or none), never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        write(str(tmp))


def save_safetensors(tensors, path, metadata):
    from safetensors.torch import save_file

    tensors = {k: t.detach().to("cpu").contiguous() for k, t in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
