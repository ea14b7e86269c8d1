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


# Shipped specs whose shrunk build takes tens of seconds on 2 cores (Qwen3-Next: 4 layers of
# 32 DeltaNet heads of 128 and 16 experts): run with -m slow; tests/weights/test_hf_qwen3_next.py
# covers the structure in the default run.
SLOW_SPECS = ("qwen3_next_80b_a3b",)


def slow_marked(paths):
    """``paths`` for a parametrize, the SLOW_SPECS among them marked slow."""
    return [pytest.param(p, marks=pytest.mark.slow) if Path(p).stem in SLOW_SPECS else p
            for p in paths]


def fewest_layers(path, at_least=2):
    """The fewest layers that keep every ``every:`` rule of the spec at ``path`` selecting a
    layer (a hybrid's ``every: 4, offset: 3`` needs 4), and ``at_least``. Rules that list layer
    indices (Nemotron-H's 52) are cut to the new depth by :func:`load_shrunk` instead."""
    import yaml

    rules = (yaml.safe_load(Path(path).read_text()) or {}).get("layers") or []
    needed = [rule.get("offset", 0) + 1 for rule in rules if "every" in rule]
    return max([at_least, *needed])


def shrink(path):
    """SHRINK for the spec at ``path``, with as many layers as its ``layers:`` rules need, and
    a mixture of more than 16 experts cut to 16 (Qwen3-Next's 512 would take minutes)."""
    import yaml

    overrides = [f"model.n_layers={fewest_layers(path)}", *SHRINK[1:]]
    components = yaml.safe_load(Path(path).read_text()).get("components") or {}
    attention = components.get("attention")
    if isinstance(attention, dict) and attention.get("name") == "mamba2":  # 128 heads of 64 x 128
        overrides += ["components.attention.heads=0", "components.attention.head_dim=16",
                      "components.attention.d_state=16", "components.attention.chunk_size=16",
                      f"components.attention.n_groups={min(attention.get('n_groups', 1), 8)}"]
    ffn = components.get("ffn")
    if isinstance(ffn, dict) and ffn.get("n_experts", 0) > 16:
        overrides += ["components.ffn.n_experts=16",
                      f"components.ffn.top_k={min(ffn.get('top_k', 2), 4)}"]
    return overrides
