"""Imports point one way: no import cycle in explorer's core, its built-in plugins or the
benchmarks, and the core never imports a built-in plugin.

The graph is read from the source with ``ast``, not by importing: every ``import`` and ``from ...
import`` counts, at module level, inside a function (a lazy import is still a dependency) and
under ``if TYPE_CHECKING:``. An edge goes to the most specific module an import names
(``from explorer.model import gpt`` -> explorer.model.gpt; ``from explorer.weights import
load_weights`` -> the package explorer.weights, whose ``__init__`` imports its submodules, which
are edges too). The parent packages Python runs on the way are not edges: ``import a.b.c`` runs
``a/__init__``, but that is where a package re-exports, not a dependency of ``a.b.c``.
"""

import ast

from tests.helpers import ROOT

# package name -> its folder in the checkout (plugins/ installs as explorer.plugins: setup.py)
CORE = {"explorer": ROOT / "explorer", "explorer.plugins": ROOT / "plugins"}
BENCHMARKS = ROOT / "benchmarks"  # scripts that import each other by bare name (sys.path)
PLUGINS = "explorer.plugins"


def modules_under(package, folder):
    """``{module name: path}`` for every ``.py`` file under ``folder``, as package ``package``."""
    found = {}
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((package, *parts))] = path
    return found


def imported_names(module, path, is_package):
    """Every module name ``module``'s source imports, anywhere in it, relative ones resolved;
    ``from X import y`` gives ``X.y`` (the caller keeps it if ``X.y`` is a module, else X)."""
    here = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[:len(here.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(modules):
    """``{module: set of modules it imports}``, within ``modules`` (``{name: path}``)."""
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(module, path, path.name == "__init__.py"):
            # The most specific known module the name starts with: an attribute of a module
            # (from explorer.errors import SpecError) is an edge to the module.
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan's algorithm), each
    sorted, plus any module that imports itself; no recursion, so no depth limit."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return found


def a_cycle(graph, component):
    """One concrete loop through ``component``, ``a -> b -> ... -> a``, for the message."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        step = min(t for t in graph[path[-1]] if t in members)
        if step in seen:
            return " -> ".join(path[path.index(step):] + [step])
        path.append(step)
        seen.add(step)


def assert_acyclic(graph):
    found = cycles(graph)
    assert not found, "import cycles (move the shared piece down a layer):\n" + "\n".join(
        a_cycle(graph, component) for component in found)


def core_modules():
    modules = {}
    for package, folder in CORE.items():
        modules.update(modules_under(package, folder))
    return modules


def test_the_core_and_its_plugins_have_no_import_cycle():
    assert_acyclic(import_graph(core_modules()))


def test_the_core_packages_import_one_way():
    """The layering rule a package at a time: explorer.spec, explorer.model, ... (the root's
    __init__ and the built-in plugins each count as one) import one another without a loop, so
    a lower package never imports a higher one."""
    graph = {}
    for module, targets in import_graph(core_modules()).items():
        graph.setdefault(package_of(module), set()).update(
            package_of(t) for t in targets if package_of(t) != package_of(module))
    assert_acyclic(graph)


def package_of(module):
    """``explorer.model.gpt`` -> ``explorer.model``; ``explorer`` and ``explorer.errors`` stay."""
    return ".".join(module.split(".")[:2])


def test_the_benchmarks_have_no_import_cycle():
    scripts = {path.stem: path for path in sorted(BENCHMARKS.glob("*.py"))}
    assert_acyclic(import_graph(scripts))


def test_the_core_never_imports_a_built_in_plugin():
    """Built-ins are registered by name (DEFAULT_PLUGINS), as any plugin is: no module of the
    core imports one, names one in a string (importlib), or reaches one through another."""
    modules = core_modules()
    graph = import_graph(modules)
    core = [m for m in modules if m != PLUGINS and not m.startswith(PLUGINS + ".")]
    imports = {m: sorted(t for t in graph[m] if t == PLUGINS or t.startswith(PLUGINS + "."))
               for m in core}
    assert {m: found for m, found in imports.items() if found} == {}
    named = {m: strings_naming_plugins(modules[m]) for m in core}
    assert {m: found for m, found in named.items() if found} == {}


def strings_naming_plugins(path):
    """The string constants of a module that name explorer.plugins, outside docstrings and the
    plugin manager's DEFAULT_PLUGINS."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skipped = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            skipped.add(id(body[0].value))  # a docstring
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "DEFAULT_PLUGINS" for t in node.targets):
            skipped.update(id(n) for n in ast.walk(node.value))
    return sorted(node.value for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and id(node) not in skipped and PLUGINS in node.value)


def test_the_graph_reader_finds_lazy_relative_and_package_imports(tmp_path):
    """The reader itself, on a made-up package: a function-level import, a relative import, an
    ``__init__`` that re-exports, an attribute import; and the cycle they close is named."""
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("from .low import thing\n")
    (tmp_path / "pkg" / "sub" / "low.py").write_text(
        "def thing():\n    from pkg.high import other  # lazy\n")
    (tmp_path / "pkg" / "high.py").write_text("from .sub import thing\n\ndef other(): pass\n")
    graph = import_graph(modules_under("pkg", tmp_path / "pkg"))
    assert graph == {"pkg": set(), "pkg.sub": {"pkg.sub.low"}, "pkg.sub.low": {"pkg.high"},
                     "pkg.high": {"pkg.sub"}}
    assert cycles(graph) == [["pkg.high", "pkg.sub", "pkg.sub.low"]]
    assert a_cycle(graph, ["pkg.high", "pkg.sub", "pkg.sub.low"]) == \
        "pkg.high -> pkg.sub -> pkg.sub.low -> pkg.high"
    graph["pkg.sub.low"] = set()
    assert cycles(graph) == []


def test_a_plugin_named_in_a_string_is_found_and_docstrings_are_not(tmp_path):
    module = tmp_path / "core.py"
    module.write_text('"""Built-ins live in explorer.plugins.*."""\n'
                      'DEFAULT_PLUGINS = ("explorer.plugins.norm",)\n\n'
                      'def f():\n    """See explorer.plugins.ffn."""\n'
                      '    return __import__("explorer.plugins.moe")\n')
    assert strings_naming_plugins(module) == ["explorer.plugins.moe"]
