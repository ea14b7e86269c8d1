"""The tests mirror the code: a folder of tests per package of explorer, and no test module
imports another (what several need lives in tests/helpers/)."""

import ast

from tests.helpers import ROOT

TESTS = ROOT / "tests"


def imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_no_test_module_imports_another():
    offenders = [(path.relative_to(TESTS).as_posix(), module)
                 for path in TESTS.rglob("*.py")
                 for module in imported_modules(path)
                 if module.rsplit(".", 1)[-1].startswith("test_")]
    assert offenders == []


def test_each_test_folder_is_a_package_of_explorer():
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and p.name not in (
        "helpers", "__pycache__")}
    packages = {p.name for p in (ROOT / "explorer").iterdir()
                if (p / "__init__.py").is_file()}
    assert folders <= packages, folders - packages
    # At the top only the tests of the repository as a whole (the package, README, layering).
    assert {p.name for p in TESTS.glob("test_*.py")} <= {
        "test_layout.py", "test_packaging.py", "test_readme.py", "test_import_graph.py"}
