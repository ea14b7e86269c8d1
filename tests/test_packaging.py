"""The distribution holds what the tree holds: every package of explorer/ and plugins/ (found by
setup.py, so a new subpackage cannot be forgotten), the templates, the shipped specs and sweeps.
.ci/run also installs the wheel without -e and runs the commands by name from another folder."""

import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # From a copy: setuptools leaves build/ and egg-info beside the sources it builds.
    source = out / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", "*.sqlite*", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(source)], check=True,
                   capture_output=True)
    (path,) = out.glob("explorer-*.whl")
    with zipfile.ZipFile(path) as archive:
        return set(archive.namelist())


def in_tree(folder, pattern):
    return {p.relative_to(ROOT / folder) for p in (ROOT / folder).rglob(pattern)
            if "__pycache__" not in p.parts}


def test_every_module_of_the_tree_is_in_the_wheel(wheel):
    for folder, package in (("explorer", "explorer"), ("plugins", "explorer/plugins")):
        for module in in_tree(folder, "*.py"):
            assert f"{package}/{module.as_posix()}" in wheel, module
    assert "explorer/cli/__init__.py" in wheel  # the package a hand-kept list once forgot


def test_the_templates_specs_and_sweeps_are_in_the_wheel(wheel):
    for folder, package, pattern in (("explorer/html/templates", "explorer/html/templates", "*"),
                                     ("specs", "explorer/specs", "*.yaml"),
                                     ("sweeps", "explorer/sweeps", "*.yaml"),
                                     ("suites", "explorer/suites", "*.yaml")):
        files = in_tree(folder, pattern)
        assert files
        for name in files:
            assert f"{package}/{name.as_posix()}" in wheel, name
    assert "explorer/specs/models/llama3_8b.yaml" in wheel
