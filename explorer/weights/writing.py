"""Writing weight files: through a temporary file and a rename, never a truncated file."""

import json
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


SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


def save_sharded(tensors, folder, max_shard_bytes, metadata):
    """Write ``tensors`` into ``folder`` as transformers does: ``model.safetensors``, or, above
    ``max_shard_bytes``, ``model-0000k-of-0000n.safetensors`` shards of at most that size (a
    larger tensor alone in its shard) and ``model.safetensors.index.json``. Once they are
    written, a previous export's files that would shadow them (the single file, or an index and
    its shards) are removed; an interrupted export leaves the previous one whole.
    Returns the paths written, the index last."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shards, size, total = [[]], 0, 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
        total += nbytes
    previous = _previous(folder)
    if len(shards) == 1:
        save_safetensors(tensors, folder / SINGLE, metadata)
        _remove(previous - {folder / SINGLE})
        return [str(folder / SINGLE)]
    files, weight_map = [], {}
    for k, names in enumerate(shards, 1):
        path = folder / f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        save_safetensors({n: tensors[n] for n in names}, path, metadata)
        weight_map.update(dict.fromkeys(names, path.name))
        files.append(str(path))
    index = json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    atomic_write(folder / INDEX, lambda tmp: Path(tmp).write_text(index + "\n"))
    _remove(previous - {folder / INDEX, *map(Path, files)})
    return [*files, str(folder / INDEX)]


def _previous(folder):
    """The weight files of an earlier export to ``folder``: what a reader would take for the
    new one's (the single file, an index and the shards it names)."""
    found = {folder / SINGLE}
    index = folder / INDEX
    if index.is_file():
        found.add(index)
        try:
            shards = json.loads(index.read_text()).get("weight_map", {}).values()
        except (ValueError, AttributeError, OSError):
            shards = ()
        found.update(folder / name for name in shards
                     if isinstance(name, str) and "/" not in name and name.endswith(".safetensors"))
    return found


def _remove(paths):
    for path in paths:
        path.unlink(missing_ok=True)
