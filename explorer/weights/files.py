"""Reading checkpoint files: which files a path means, and their tensors, metadata and config.

A path is a weights file or a directory (a Hugging Face or training output folder, possibly
sharded). Safetensors files are recognised by their header, torch files by their zip or pickle
signature, never by the file name. Pickles are never trusted: they are read with ``torch.load(...,
weights_only=True)``, which refuses anything but tensors and plain containers. Any other file
(a ``config.json``, a YAML spec, text) is named for what it is.
"""

import json
import os
import pickle
import warnings
from functools import cached_property
from pathlib import Path

import torch
import yaml

from ..errors import ExplorerError
from ..spec.hf_config import CONFIG_NAME, read_config

WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin", "model.pth")
SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHTS_LIST = "model.safetensors, pytorch_model.bin or model.pth"
EXPECTED = f"expected {WEIGHTS_LIST}"
TORCH_SIGNATURES = (b"PK\x03\x04", b"\x80")  # torch.save's zip archive, or its legacy pickle
TRAINING_WRAPPERS = ("model_state_dict", "state_dict", "model")  # {"model_state_dict": ...}


class CheckpointFile:
    """What a checkpoint path holds, as formats see it (``detect``, ``to_model``, ``check``)."""

    def __init__(self, path, files, tensors, metadata):
        self.path = Path(path)  # the file, or the directory of a sharded checkpoint
        self.files = files  # the weight files read, in order
        self.tensors = tensors  # name in the file -> tensor
        self.metadata = metadata  # the safetensors header metadata ({} for torch files)

    @property
    def names(self):
        return list(self.tensors)

    @cached_property
    def config(self):
        """``config.json`` beside the weights as a dict, or None if there is none."""
        path = self.files[0].parent / CONFIG_NAME
        return read_config(path)[0] if path.is_file() else None


def read_file(path):
    """Read every tensor of the checkpoint at ``path`` into a :class:`CheckpointFile`."""
    files = weight_files(path)
    tensors, metadata = {}, {}
    for file in files:
        if is_safetensors(file):
            part, meta = read_safetensors(file)
            metadata = metadata or meta
        else:
            part = read_pickle(file)
        tensors.update(part)
    return CheckpointFile(files[0] if len(files) == 1 else Path(path), files, tensors, metadata)


def weight_files(path):
    """The weight files of ``path`` (a file, or a Hugging Face / training output directory),
    each checked to be safetensors or a torch file; reads only their first bytes."""
    files = _weight_files(Path(path))
    for file in files:
        if not file.is_file():
            raise ExplorerError(f"{file}: no such file (named by the shard index)")
        if not is_safetensors(file) and not _is_torch_file(file):
            raise ExplorerError(f"{file}: {what_it_is(file)}")
    return files


def _weight_files(path):
    if not path.exists():
        raise ExplorerError(f"{path}: no such file or directory")
    if path.is_file():
        index = _shard_index(path) if path.name.endswith(".json") else None
        return index if index is not None else [path]
    for name in WEIGHT_NAMES:
        if (path / name).is_file():
            return [path / name]
    for name in SHARD_INDEXES:
        if (path / name).is_file():
            return _shard_index(path / name)
    found = sorted(p.name for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pth"))
    if len(found) == 1:
        return [path / found[0]]
    raise ExplorerError(f"{path}: no weights found; {EXPECTED}"
                        + (f" (it has {', '.join(found)}: name one of them)" if found else ""))


def _shard_index(path):
    """The shards a ``*.index.json`` names (in order, each once), or None for other JSON."""
    try:
        doc = json.loads(path.read_text())
    except (ValueError, OSError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or "weight_map" not in doc:
        return None
    weight_map = doc["weight_map"]
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ExplorerError(f"{path}: not a readable shard index: weight_map should map tensor "
                            "names to file names")
    return [path.parent / name for name in dict.fromkeys(weight_map.values())]


def is_safetensors(path):
    """Whether ``path`` starts like a safetensors file: an 8-byte header length, then ``{``."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < size <= os.path.getsize(path) - 8


def read_safetensors(path, tensors_too=True):
    """(tensors, metadata) of a safetensors file; ``tensors_too=False`` reads the header only."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if tensors_too else {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ExplorerError(f"{path}: not a readable safetensors file: {exc}") from None
    return tensors, metadata


def _is_torch_file(path):
    with open(path, "rb") as f:
        head = f.read(4)
    return any(head.startswith(sig) for sig in TORCH_SIGNATURES)


def read_pickle(path):
    """A torch checkpoint, unpickled with ``weights_only=True``: tensors and containers only."""
    try:
        # torch warns on the way to refusing some pickles (a protocol it does not expect, ...):
        # the refusal below says it all, in one line.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((line.strip() for line in str(exc).splitlines()
                       if "Unsupported" in line or "global" in line.lower()), "")
        raise ExplorerError(
            f"{path}: refused: the file holds Python objects, not only tensors, and explorer "
            f"never unpickles them (torch.load weights_only=True)"
            + (f": {detail}" if detail else "")) from None
    except Exception as exc:  # zip or pickle damage: torch raises RuntimeError, EOFError, ...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ExplorerError(f"{path}: not a readable torch checkpoint: "
                            f"{type(exc).__name__}: {first}") from None
    if isinstance(obj, dict):
        for wrapper in TRAINING_WRAPPERS:
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        what = type(obj).__name__ + (f" with keys {', '.join(map(str, list(obj)[:5]))}"
                                     if isinstance(obj, dict) else "")
        raise ExplorerError(f"{path}: holds a {what}, not a state_dict of named tensors")
    return obj


def what_it_is(path, limit=1 << 20):
    """What a file that is neither safetensors nor a torch file is, and what to give instead."""
    with open(path, "rb") as f:
        head = f.read(limit)
    if not head:  # would decode as text: an empty file is not "a text file"
        return f"is empty (0 bytes), not a checkpoint; {EXPECTED}"
    folder = (f"give the directory that holds it ({path.parent}) "
              f"or its weights file ({WEIGHTS_LIST})")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        return (f"not a checkpoint: neither safetensors nor a torch.save file (it starts with "
                f"{head[:8]!r}); {EXPECTED}")
    try:
        json.loads(text)
        return f"a JSON file, not a checkpoint; {folder}"
    except (ValueError, RecursionError):  # deep nesting exhausts even the C decoder's stack
        pass
    from ..spec.reading import NestingError, load_yaml

    try:
        doc = load_yaml(text)
    except (yaml.YAMLError, NestingError):
        doc = None
    if isinstance(doc, dict) and "model" in doc:
        return "a YAML spec, not a checkpoint; give it as SPEC and the weights with --weights"
    return f"a text file, not a checkpoint; {EXPECTED}"
