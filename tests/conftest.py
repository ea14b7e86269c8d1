
import pytest
import yaml

import explorer

from tests.helpers import ROOT, TINY_MODEL, TINY_TOKENIZER  # noqa: F401


@pytest.fixture(autouse=True)
def in_the_checkout(monkeypatch):
    """Every test runs in the checkout's root, whichever folder pytest was started from: the
    paths a test writes (``specs/tiny.yaml``) and the ones its output shows mean the same."""
    monkeypatch.chdir(ROOT)


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
