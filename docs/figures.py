"""Every figure README.md quotes, produced here so that it cannot drift.

    python docs/figures.py                 # which figures are up to date (the fast ones are run)
    python docs/figures.py --write [NAME]  # compute the figures (all, or NAME...) into README.md
    python docs/figures.py --check --fast  # exit 1 if a fast figure differs (tests do this)
    python docs/figures.py --show NAME     # print one figure

README.md holds each figure between two markers, ``<!-- figure: NAME -->`` and
``<!-- /figure: NAME -->``; ``--write`` replaces what lies between them. A *fast* figure is
deterministic and takes seconds (error messages, counts, the KV cache): tests/test_readme.py
recomputes each and compares it with README's copy. A *slow* one trains, times or benchmarks
(timings are given as ranges with the machine they came from): it is only recomputed by hand,
with this script, and the test checks only that its markers are in place.
"""

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FIGURES = {}  # name -> (function, slow)


def figure(name, slow=False):
    def register(function):
        FIGURES[name] = (function, slow)
        return function
    return register


def fenced(text, lang=""):
    return f"```{lang}\n{text.rstrip()}\n```"


@contextlib.contextmanager
def in_folder(folder):
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def cli(*args, env=None):
    """``explorer ARGS`` in this process: (exit code, stdout, stderr)."""
    from explorer.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
                code = 0
            except SystemExit as exc:
                code = exc.code
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, out.getvalue(), err.getvalue()


# -- fast figures ------------------------------------------------------------------------------

BAD_SPECS = {
    "bad.yaml": "extends: gpt2_small.yaml\nmodel: {n_head: 12}\n",
    "typo.yaml": "extends: gpt2_small.yaml\ncomponents: {norm: layernrom}\n",
    "heads.yaml": "extends: gpt2_small.yaml\nmodel: {emb_dim: 18, n_heads: 4}\n",
    "broken.yaml": "name: x\nmodel: {vocab_size: 256, n_layers: [2\n",
    "layout.yaml": ("extends: gpt2_small.yaml\nlayers:\n"
                    "  - {every: 2, first: 3, components: {attention: {window: 4}}}\n"),
}
BAD_SETS = [
    ["components.attention=gqa", "components.attention.n_kv_heads=5"],
    ["components.norm.eps=-1"],
    ["analyses.train.seq_len=2048"],
    ["tokenizer=gpt2", "model.vocab_size=256"],
]


@figure("spec-errors")
def spec_errors():
    """The one-line errors of bad specs and overrides, as the CLI prints them."""
    import shutil

    lines = []
    with tempfile.TemporaryDirectory() as folder, in_folder(folder):
        shutil.copy(ROOT / "specs" / "gpt2_small.yaml", "gpt2_small.yaml")
        for name, text in BAD_SPECS.items():
            Path(name).write_text(text)
            lines.append(cli("build", name, "--only", "params")[2].strip())
    with in_folder(ROOT):
        for sets in BAD_SETS:
            args = [arg for s in sets for arg in ("--set", s)]
            lines.append(cli("build", "specs/gpt2_small.yaml", *args, "--only", "params")[2].strip())
    return fenced("\n".join(lines))


@figure("build-params")
def build_params():
    """The header and the params section of a build with an override (meta device: instant)."""
    with in_folder(ROOT):
        code, out, _ = cli("build", "specs/gpt2_small.yaml", "--set", "model.n_layers=2",
                           "--only", "params")
    assert code == 0
    head, _, params = out.partition("== params ==")
    first = head.splitlines()[0]
    return fenced(f"$ explorer build specs/gpt2_small.yaml --set model.n_layers=2 --only params\n"
                  f"{first}\n...\n== params =={params.rstrip()}")


@figure("layers-pattern")
def layers_pattern():
    """How a build shows a per-layer layout."""
    with in_folder(ROOT):
        code, out, _ = cli("build", "specs/ablations/local_global.yaml", "--only", "params")
    assert code == 0
    section = out[out.index("\nlayers:") + 1:out.index("== params ==")].rstrip()
    return fenced(f"$ explorer build specs/ablations/local_global.yaml --only params\n...\n"
                  f"{section}")


@figure("kv-cache")
def kv_cache():
    """The KV-cache lines of the memory analysis (they do not depend on its seq_len)."""
    import explorer

    lines = []
    with in_folder(ROOT):
        for path in ("specs/gpt2_small.yaml", "specs/ablations/gqa.yaml",
                     "specs/ablations/local_global.yaml"):
            spec = explorer.load_spec(path, overrides=["analyses.memory.seq_len=8"])
            kv = explorer.analyze(spec, only=["memory"])["analyses"]["memory"]["kv_cache"]
            per_token, full = kv["bytes_per_token"], kv["bytes_full_context"]
            lines.append(f"| `{path}` | {per_token['bf16']:,} | {full['bf16'] / 2**20:,.2f} MiB |")
    return ("| spec | KV cache bytes per token (bf16) | at 1,024 tokens (bf16) |\n"
            "|---|---:|---:|\n" + "\n".join(lines))


@figure("shape-only", slow=True)
def shape_only():
    """Shape-only builds and 100-point dry-runs beside `import torch` (benchmarks/shape_only.py,
    about two minutes): wall time and peak RSS of each command in a fresh process."""
    import runpy

    return runpy.run_path(str(ROOT / "benchmarks" / "shape_only.py"))["measure"]()[0]


# -- the README ---------------------------------------------------------------------------------

MARKER = re.compile(r"<!-- figure: ([\w-]+) -->\n(.*?)\n<!-- /figure: \1 -->", re.S)


def readme_figures(text=None):
    """{name: the text README holds between its markers}."""
    return {m.group(1): m.group(2) for m in MARKER.finditer(text or README.read_text())}


def compute(name):
    function, _ = FIGURES[name]
    sys.path.insert(0, str(ROOT))
    return function().rstrip()


def write(names):
    text = README.read_text()
    for name in names:
        value = compute(name)
        text, count = re.subn(rf"(<!-- figure: {name} -->\n).*?(\n<!-- /figure: {name} -->)",
                              lambda m: m.group(1) + value + m.group(2), text, flags=re.S)
        if not count:
            raise SystemExit(f"README.md has no markers for figure {name!r}")
        print(f"wrote {name}", file=sys.stderr)
    README.write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME")
    parser.add_argument("--write", action="store_true", help="recompute into README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if a figure differs")
    parser.add_argument("--fast", action="store_true", help="only the fast figures")
    parser.add_argument("--show", action="store_true", help="print the figures")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in FIGURES]
    if unknown:
        raise SystemExit(f"unknown figure {unknown[0]!r}; figures: {', '.join(FIGURES)}")
    names = args.names or [n for n, (_, slow) in FIGURES.items() if not (args.fast and slow)]
    if args.write:
        write(names)
        return 0
    if args.show:
        for name in names:
            print(compute(name))
        return 0
    current, stale = readme_figures(), []
    for name in names:
        if FIGURES[name][1] and not args.names:
            print(f"{name}: slow, not recomputed ({'in README' if name in current else 'MISSING'})")
            continue
        ok = current.get(name) == compute(name)
        print(f"{name}: {'up to date' if ok else 'DIFFERS' if name in current else 'MISSING'}")
        stale += [] if ok else [name]
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
