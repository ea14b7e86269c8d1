"""The specs and sweep files explorer ships, addressable by name (as litgpt's ``Config.from_name``).

``explorer build gpt2_small`` and ``explorer.load_spec("models/llama3_8b")`` find the YAML files
that come with the package, from any folder: in a checkout they are ``specs/`` and ``sweeps/``; in
an installed wheel, the same files under ``explorer/specs`` and ``explorer/sweeps``. A path that
exists always wins over a name, so ``specs/gpt2_small.yaml`` keeps meaning the file in the current
folder; where no such file exists it is read as the name ``gpt2_small``, and the README's commands
work from anywhere.
"""

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from explorer.errors import SpecError, did_you_mean

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Collection:
    """One kind of shipped file: its package (in a wheel), its folder (in a checkout)."""

    kind: str  # "spec" or "sweep file", for messages
    package: str  # "explorer.specs"
    folder: str  # "specs"
    command: str  # where the names are listed

    def root(self):
        """The folder that holds the shipped files: the package's data in an install, the
        checkout's folder otherwise (an editable install maps the package onto it too)."""
        try:
            return Path(next(iter(importlib.import_module(self.package).__path__)))
        except ModuleNotFoundError:
            return Path(__file__).resolve().parents[2] / self.folder

    def names(self):
        """``{name: path}`` for every shipped file: ``"gpt2_small"``, ``"models/llama3_8b"``."""
        root = self.root()
        found = {}
        for path in sorted(root.rglob("*")):
            if path.suffix in SUFFIXES and path.is_file():
                found[path.relative_to(root).with_suffix("").as_posix()] = path
        return found


SPECS = Collection("spec", "explorer.specs", "specs", "explorer specs")
SWEEPS = Collection("sweep file", "explorer.sweeps", "sweeps", "explorer specs --sweeps")
# A probe's suite (explorer.sweep.probe): not a sweep file, so not among the sweeps
SUITES = Collection("probe suite", "explorer.suites", "suites", "explorer probe --help")


def as_name(reference, collection):
    """``"specs/models/llama3_8b.yaml"`` -> ``"models/llama3_8b"``; a name stays as it is."""
    name = str(reference).replace(os.sep, "/")
    prefix = collection.folder + "/"
    if name.startswith("./"):
        name = name[2:]
    if name.startswith(prefix):
        name = name[len(prefix):]
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def find(reference, collection):
    """The shipped file ``reference`` names, or None. A bare name's last part (``llama3_8b``)
    is enough when only one shipped file has it; something spelt as a file (``nope.yaml``,
    ``x/y``) must name one exactly."""
    names = collection.names()
    name = as_name(reference, collection)
    if name in names:
        return names[name]
    if name != str(reference) or "/" in name:
        return None
    by_leaf = [path for key, path in names.items() if key.rsplit("/", 1)[-1] == name]
    return by_leaf[0] if len(by_leaf) == 1 else None


def resolve(reference, collection=SPECS):
    """The file ``reference`` means: a path that exists, else the shipped file of that name.

    Raises :class:`SpecError` naming the close matches when it is neither.
    """
    path = Path(reference)
    if path.exists():
        return path
    shipped = find(reference, collection)
    if shipped is not None:
        return shipped
    raise SpecError(str(reference), None, f"no such file, and no shipped {collection.kind} of "
                    "that name", unknown_hint(reference, collection))


def unknown_hint(reference, collection):
    """``"did you mean 'gpt2_small'? `explorer specs` lists them"``: the end of the error."""
    names = list(collection.names())
    by_leaf = {full.rsplit("/", 1)[-1]: full for full in names}
    hint = did_you_mean(as_name(reference, collection), names, n=3, aliases=by_leaf)
    return f"{hint}`{collection.command}` lists them"


def summary_line(path):
    """What a shipped file is, in a line: the first sentence of its opening comment, else its
    ``description:``."""
    import re

    import yaml

    text = Path(path).read_text(encoding="utf-8")
    comment = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("#").strip())
    # The first sentence: up to a ": " or a full stop before a capital ("et al. 2022" goes on).
    sentence = re.split(r": |\? |(?<!\bal)\.(?: (?=[A-Z(])|$)", " ".join(comment).strip(),
                        maxsplit=1)[0]
    if not sentence:
        doc = yaml.safe_load(text)
        sentence = doc.get("description", "") if isinstance(doc, dict) else ""
    return sentence if len(sentence) <= 100 else sentence[:99].rstrip() + "…"
