"""What many tests share: the repository's root, the CLI in-process, a tiny model's settings.

Tests import these (``from tests.helpers import run_cli``); no test module imports another.
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # the checkout


def load_script(relative_path):
    """A script of the repository that is not a package (docs/figures.py, ...) as a module."""
    path = ROOT / relative_path
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def load_shrunk(path, overrides):
    """``explorer.load_spec(path, overrides)``, where the overrides cut ``model.n_layers``: a
    ``layers:`` entry that names layer indices (Nemotron-H's irregular hybrid pattern) keeps the
    ones below the new depth, and goes when none remain."""
    import yaml

    import explorer
    from explorer.spec.loading import spec_from_dict

    depth = [int(o.split("=", 1)[1]) for o in overrides if o.startswith("model.n_layers=")]
    doc = yaml.safe_load(Path(path).read_text())
    named = [rule for rule in doc.get("layers") or () if "layers" in rule]
    if not depth or not named or "extends" in doc:
        return explorer.load_spec(path, overrides=overrides)
    kept = []
    for rule in doc["layers"]:
        if "layers" in rule:
            rule = {**rule, "layers": [i for i in rule["layers"] if i < depth[-1]]}
            if not rule["layers"]:
                continue
        kept.append(rule)
    return spec_from_dict({**doc, "layers": kept}, source=str(path), overrides=overrides)


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


# Any shipped spec, shrunk to build and run in milliseconds (GPT-2's vocabulary and MLA's sizes
# aside): what the tests over every spec apply.
SHRINK = ["model.n_layers=2", "model.emb_dim=64", "model.n_heads=8", "model.context_length=32",
          "tokenizer=bytes", "model.vocab_size=300"]
