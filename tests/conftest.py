import importlib.util
from pathlib import Path

import pytest
import yaml

import explorer

ROOT = Path(__file__).resolve().parent.parent


def load_script(relative_path):
    """A script of the repository that is not a package (docs/figures.py, ...) as a module."""
    path = ROOT / relative_path
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def run_cli(capsys, *args):
    """``explorer ARGS`` in this process: (exit code, stdout, stderr)."""
    from explorer.cli import main

    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


# A small model every test can build in milliseconds: 2 blocks, 16 wide, 4 heads, with the byte
# tokenizer's 256 tokens (a vocabulary smaller than the spec's tokenizer is refused).
TINY_TOKENIZER = "bytes"
TINY_MODEL = {"vocab_size": 256, "context_length": 32, "emb_dim": 16, "n_heads": 4,
              "n_layers": 2, "qkv_bias": False, "drop_rate": 0.0}


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec document (a dict, or YAML text) to a file and return its path."""
    counter = iter(range(10**6))

    def write(doc, name=None):
        path = tmp_path / (name or f"spec{next(counter)}.yaml")
        path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
        return path

    return write


@pytest.fixture
def make_spec(write_spec):
    """Load a tiny spec with the given components/model keys, e.g. make_spec(norm="rmsnorm")."""

    def make(model=None, plugins=None, tokenizer=TINY_TOKENIZER, **components):
        doc = {"name": "tiny", "seed": 123, "tokenizer": tokenizer,
               "model": {**TINY_MODEL, **(model or {})}, "components": components}
        return explorer.load_spec(write_spec(doc), plugins=plugins)

    return make


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and lose a lot on a busy machine: use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
