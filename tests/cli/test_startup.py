"""Start-up stays fast: --help, plugins --help and spec validation never import torch (nor
matplotlib, tiktoken or scipy)."""

import subprocess
import sys

import pytest

CHECK = """
import sys
from explorer.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules
               if m.split('.')[0] in ('torch', 'tiktoken', 'matplotlib', 'scipy'))
print('HEAVY', heavy[:5])
"""


@pytest.mark.parametrize("argv", [["--help"], ["plugins", "--help"], ["build", "--help"],
                                  ["compare", "--help"]])
def test_help_does_not_import_torch(argv):
    proc = subprocess.run([sys.executable, "-c", CHECK.format(argv=argv)],
                          capture_output=True, text=True)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr


def test_spec_validation_does_not_import_torch():
    code = ("import sys, explorer\n"
            "for p in ['specs/gpt2_small.yaml', 'specs/gpt2_small_openai.yaml']:\n"
            "    explorer.load_spec(p)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_a_shape_only_build_imports_nothing_it_does_not_use():
    """torch, yes (and what FakeTensorMode pulls in); no tokenizer, plotting, templates or
    transformers: a shape-only answer costs about the imports of torch."""
    argv = ["build", "specs/tiny.yaml", "--only", "params,memory,flops,summary", "--format", "json"]
    code = CHECK.format(argv=argv).replace("('torch', 'tiktoken', 'matplotlib', 'scipy')",
                                           "('tiktoken', 'transformers', 'matplotlib', 'jinja2')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert '"total": 339840' in proc.stdout and "HEAVY []" in proc.stdout, proc.stderr
