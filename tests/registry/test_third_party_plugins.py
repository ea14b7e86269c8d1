"""Third-party plugins: the explorer-scalenorm example loaded each way, and how failures show."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import explorer
from explorer import Component, hookimpl
from tests.helpers import run_cli
from tests.helpers import ROOT

EXAMPLE = ROOT / "examples" / "explorer-scalenorm"
MODULE = EXAMPLE / "explorer_scalenorm.py"
TINY = {"vocab_size": 256, "context_length": 32, "emb_dim": 16, "n_heads": 4, "n_layers": 2}
# The tiny model (byte tokens) with every norm a ScaleNorm: the book's count with 1 parameter
# per norm.
H, L, V, S = 16, 2, 256, 32
BOOK_COUNT_WITHOUT_NORMS = V * H + S * H + L * ((4 * H * H + H) + (8 * H * H + 5 * H)) + V * H
SCALENORM_COUNT = BOOK_COUNT_WITHOUT_NORMS + (2 * L + 1)


def scalenorm_formula(x, g, eps=1e-5):
    """Nguyen & Salazar (2019), eq. (3): g * x / ||x||, the norm clamped at eps."""
    length = (x * x).sum(dim=-1, keepdim=True).sqrt()
    return g * x / torch.maximum(length, torch.tensor(eps))


@pytest.fixture(autouse=True)
def forget_plugin_modules():
    """Each test imports the example afresh (as an entry point, a file, or a pip install)."""
    yield
    for name in [n for n in sys.modules if "scalenorm" in n or n.startswith("explorer_plugin_")]:
        del sys.modules[name]


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A fake installed explorer-scalenorm: a dist-info with the entry point, and the module."""
    site = tmp_path / "site"
    info = site / "explorer_scalenorm-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: explorer-scalenorm\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[explorer]\nscalenorm = explorer_scalenorm\n")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(site))
    return info


def spec_doc(norm="scalenorm", **extra):
    return {"name": "t", "seed": 123, "tokenizer": "bytes", "model": TINY,
            "components": {"norm": norm}, **extra}


def assert_scalenorm_model(model):
    norms = [m for m in model.modules() if type(m).__name__ == "ScaleNorm"]
    assert len(norms) == 2 * L + 1  # two per block and the final norm
    assert sum(p.numel() for p in model.parameters()) == SCALENORM_COUNT
    x = torch.randn(3, 5, H)
    for norm in norms:
        assert norm.g.item() == pytest.approx(math.sqrt(H))
        torch.testing.assert_close(norm(x), scalenorm_formula(x, math.sqrt(H)))
    assert torch.equal(norms[0](torch.zeros(H)), torch.zeros(H))  # the eps clamp: 0, not NaN


# -- (a) an installed distribution, found through the entry-point group -----------------------

def test_installed_plugin_is_found_through_its_entry_point(installed, write_spec):
    plugins = explorer.get_plugin_manager()
    registry = plugins.registry()
    assert "scalenorm" in registry.names("norm")
    assert str(registry.provider[("norm", "scalenorm")]) == "scalenorm (explorer-scalenorm 0.1.0)"
    assert registry.broken == {}

    spec = explorer.load_spec(write_spec(spec_doc()), plugins=plugins)
    assert_scalenorm_model(explorer.build_model(spec))
    report = explorer.analyze(spec, only=["params"])
    assert report["components"]["norm"] == {
        "name": "scalenorm", "params": {"eps": 1e-5}, "plugin": "scalenorm",
        "distribution": "explorer-scalenorm 0.1.0"}
    assert report["analyses"]["params"]["by_kind"]["norm"] == 2 * L + 1


def test_cli_lists_the_installed_plugin_with_its_distribution(installed, capsys):
    code, out, _ = run_cli(capsys, "plugins", "--kind", "norm", "--format", "json")
    assert code == 0
    entry = {e["name"]: e for e in json.loads(out)["components"]}["scalenorm"]
    assert (entry["plugin"], entry["distribution"]) == ("scalenorm", "explorer-scalenorm 0.1.0")
    assert entry["params"] == [{"name": "eps", "type": "float", "default": 1e-5,
                                "help": entry["params"][0]["help"], "min": 0,
                                "exclusive_min": True}]


def test_a_bad_parameter_value_is_one_line_from_the_plugins_param(installed, write_spec):
    # The plugin's Param declares the range: refused when the spec loads, as for a built-in.
    path = write_spec(spec_doc(norm={"name": "scalenorm", "eps": 0}))
    with pytest.raises(explorer.SpecError) as info:
        explorer.load_spec(path)
    assert str(info.value) == f"{path}: components.norm.eps: must be > 0, got 0.0"


# -- (b) not installed: a spec's plugins: list, and --plugin on the command line --------------

def test_spec_plugins_list_loads_a_file_relative_to_the_spec(write_spec, tmp_path):
    relative = os.path.relpath(MODULE, tmp_path)
    spec = explorer.load_spec(write_spec(spec_doc(plugins=[relative])))
    assert_scalenorm_model(explorer.build_model(spec))
    provider = spec.plugin_manager.registry().provider[("norm", "scalenorm")]
    assert Path(provider.plugin).resolve() == MODULE and provider.distribution == ""


def test_cli_plugin_option_loads_a_file(write_spec, capsys):
    path = write_spec(spec_doc())
    code, out, err = run_cli(capsys, "build", str(path), "--plugin", str(MODULE), "--only", "params",
                         "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["components"]["norm"]["plugin"] == str(MODULE)
    assert report["analyses"]["params"]["total"] == SCALENORM_COUNT
    # Without the plugin the spec names an unknown norm: one line, exit code 2.
    code, _, err = run_cli(capsys, "build", str(path), "--only", "params")
    assert code == 2
    assert err.strip().startswith(f"Error: {path}: components.norm: unknown norm component "
                                  "'scalenorm'")


# -- (c) failures: one line naming the plugin, the others keep working ----------------------

class WrongType:
    @hookimpl
    def explorer_components(self):
        return {"kind": "norm", "name": "dictnorm"}


class Raises:
    @hookimpl
    def explorer_components(self):
        raise RuntimeError("boom")


class Copycat:
    @hookimpl
    def explorer_components(self):
        return [Component(kind="norm", name="scalenorm", factory=lambda ctx, dim: None),
                Component(kind="activation", name="copycat_identity", factory=torch.nn.Identity)]


def working_spec(write_spec, plugins):
    """The others keep working: a scalenorm model builds with the same plugin manager."""
    spec = explorer.load_spec(write_spec(spec_doc()), plugins=plugins)
    assert_scalenorm_model(explorer.build_model(spec))


def test_a_named_plugin_that_fails_to_import_is_an_error(tmp_path):
    # The user asked for it: an error naming it, not a warning (it used to be skipped).
    broken = tmp_path / "needs_missing.py"
    broken.write_text("import explorer_no_such_module\n")
    with pytest.raises(explorer.PluginError) as info:
        explorer.get_plugin_manager(entry_points=False, plugins=[str(MODULE), str(broken)])
    assert str(info.value) == (f"failed to import {broken}: ModuleNotFoundError: "
                               "No module named 'explorer_no_such_module'")
    with pytest.raises(explorer.PluginError, match="^failed to import explorer_no_such_module: "
                                                   "ModuleNotFoundError"):
        explorer.get_plugin_manager(entry_points=False, plugins=["explorer_no_such_module"])


def test_entry_point_that_fails_to_import(installed, write_spec):
    (installed / "entry_points.txt").write_text(
        "[explorer]\nscalenorm = explorer_scalenorm\nghost = explorer_ghost_module\n")
    plugins = explorer.get_plugin_manager()
    assert plugins.registry().broken == {"ghost": (
        "failed to import explorer_ghost_module: ModuleNotFoundError: "
        "No module named 'explorer_ghost_module'")}
    working_spec(write_spec, plugins)


@pytest.mark.parametrize("plugin, message", [
    (WrongType(), "hook returned dict {'kind': 'norm', 'name': 'dictnorm'}; expected a list of explorer.Component"),
    (Raises(), "explorer_components raised RuntimeError: boom"),
])
def test_hook_that_misbehaves_is_skipped(installed, write_spec, plugin, message):
    plugins = explorer.get_plugin_manager()
    plugins.register(plugin, "misbehaving")
    registry = plugins.registry()
    assert registry.broken == {"misbehaving": message}
    assert "dictnorm" not in registry.names("norm")
    working_spec(write_spec, plugins)


def test_second_plugin_with_the_same_name_is_skipped_naming_both(installed, write_spec):
    plugins = explorer.get_plugin_manager()
    plugins.register(Copycat(), "copycat")
    registry = plugins.registry()
    assert registry.broken == {
        "copycat": "norm 'scalenorm' is already registered by scalenorm; this one was skipped"}
    assert registry.provider[("norm", "scalenorm")].plugin == "scalenorm"  # the first one wins
    assert "copycat_identity" in registry.names("activation")  # its other components stay
    working_spec(write_spec, plugins)


def with_ghost(installed):
    """The installed distribution also declares an entry point whose module does not exist."""
    (installed / "entry_points.txt").write_text(
        "[explorer]\nscalenorm = explorer_scalenorm\nghost = explorer_ghost_module\n")


def test_cli_plugins_shows_the_broken_ones(installed, tmp_path, capsys):
    with_ghost(installed)
    copycat = tmp_path / "copycat.py"
    copycat.write_text(MODULE.read_text())
    code, out, err = run_cli(capsys, "plugins", "--kind", "norm", "-p", str(copycat))
    assert code == 0, err
    assert "from scalenorm (explorer-scalenorm 0.1.0)" in out
    lines = out.splitlines()
    assert ("broken plugin ghost: failed to import explorer_ghost_module: ModuleNotFoundError: "
            "No module named 'explorer_ghost_module'") in lines
    assert (f"broken plugin {copycat}: norm 'scalenorm' is already registered by scalenorm; "
            "this one was skipped") in lines


def test_build_warns_about_a_broken_installed_plugin_and_still_builds(installed, write_spec,
                                                                      capsys):
    with_ghost(installed)
    code, out, err = run_cli(capsys, "build", str(write_spec(spec_doc())), "--only", "params",
                         "--format", "json")
    assert code == 0
    assert json.loads(out)["analyses"]["params"]["total"] == SCALENORM_COUNT
    assert err.splitlines() == ["warning: plugin ghost: failed to import explorer_ghost_module: "
                                "ModuleNotFoundError: No module named 'explorer_ghost_module'"]


@pytest.mark.parametrize("command", [["build", "SPEC", "--only", "params"], ["plugins"],
                                     ["compare", "SPEC", "SPEC", "--only", "params"]])
@pytest.mark.parametrize("option, plugin, reason", [
    ("-p", "explorer_no_such_module", "failed to import explorer_no_such_module: "
                                      "ModuleNotFoundError: No module named 'explorer_no_such_module'"),
    ("--plugin", "nothere.py", "plugin file nothere.py does not exist"),
])
def test_a_plugin_named_on_the_command_line_that_fails_is_exit_2(write_spec, capsys, command,
                                                                 option, plugin, reason):
    # -p nosuchmodule used to warn and exit 0, while --plugin nothere.py exited 2.
    path = str(write_spec({**spec_doc(), "components": {}}))
    args = [path if arg == "SPEC" else arg for arg in command]
    code, out, err = run_cli(capsys, *args, option, plugin)
    assert (code, out) == (2, "")
    assert err == f"Error: --plugin: {reason}\n"


def test_a_spec_plugin_that_fails_to_import_is_exit_2_naming_the_spec(write_spec, capsys):
    path = write_spec({**spec_doc(), "plugins": ["explorer_no_such_module"]})
    code, out, err = run_cli(capsys, "build", str(path), "--only", "params")
    assert (code, out) == (2, "")
    assert err == (f"Error: {path}: plugins: failed to import explorer_no_such_module: "
                   "ModuleNotFoundError: No module named 'explorer_no_such_module'\n")


def test_disable_env_blocks_an_installed_plugin(installed, monkeypatch, write_spec, capsys):
    monkeypatch.setenv("EXPLORER_DISABLE_PLUGINS", "scalenorm, some-other")
    plugins = explorer.get_plugin_manager()
    assert "scalenorm" not in plugins.registry().names("norm")
    assert "explorer_scalenorm" not in sys.modules  # never imported
    with pytest.raises(explorer.SpecError, match="components.norm: unknown norm component 'scalenorm'"):
        explorer.load_spec(write_spec(spec_doc()), plugins=plugins)
    code, out, _ = run_cli(capsys, "plugins")
    assert code == 0
    assert "blocked plugin scalenorm (EXPLORER_DISABLE_PLUGINS)" in out.splitlines()
    assert "scalenorm  " not in out


# -- a real install ---------------------------------------------------------------------------

@pytest.mark.slow
def test_pip_installed_example_loads_through_its_entry_point(tmp_path, monkeypatch, write_spec):
    source, target = tmp_path / "src", tmp_path / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    # From a copy: setuptools writes build/ and *.egg-info next to the sources.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True)
    assert (target / "explorer_scalenorm.py").is_file()
    monkeypatch.syspath_prepend(str(target))
    plugins = explorer.get_plugin_manager()
    registry = plugins.registry()
    assert str(registry.provider[("norm", "scalenorm")]) == "scalenorm (explorer-scalenorm 0.1.0)"
    assert sys.modules["explorer_scalenorm"].__file__ == str(target / "explorer_scalenorm.py")
    working_spec(write_spec, plugins)


class MixedBag:
    @hookimpl
    def explorer_components(self):
        return [Component(kind="activation", name="mixed_identity", factory=torch.nn.Identity),
                {"kind": "norm"}, "oops"]


def test_every_problem_of_a_plugin_is_kept_and_its_good_items_register():
    plugins = explorer.get_plugin_manager(entry_points=False)
    plugins.register(MixedBag(), "mixed")
    registry = plugins.registry()
    assert ("activation", "mixed_identity") in registry.components
    assert registry.broken["mixed"] == (
        "hook returned a list holding dict {'kind': 'norm'}; expected only explorer.Component; "
        "hook returned a list holding str 'oops'; expected only explorer.Component")


def test_one_file_named_by_two_paths_loads_once(tmp_path, monkeypatch):
    monkeypatch.chdir(MODULE.parent)
    relative = MODULE.name
    plugins = explorer.get_plugin_manager(entry_points=False, plugins=[str(MODULE), relative])
    registry = plugins.registry()
    assert registry.broken == {}
    assert registry.provider[("norm", "scalenorm")].plugin == str(MODULE.resolve())


class RefusesAtBuild:
    """A norm whose factory (not its check) refuses a parameter: the plugin's fault."""

    @hookimpl
    def explorer_components(self):
        def factory(ctx, dim):
            raise explorer.ParamError("dim", f"{dim} is not a power of two")
        return [Component(kind="norm", name="picky", factory=factory)]


def test_a_param_error_from_a_factory_is_the_plugins_fault_naming_it(write_spec):
    """ParamError is an ExplorerError now, but one raised while building (past validation) is
    still reported as the plugin's, with the spec key, as any exception a factory raises."""
    plugins = explorer.get_plugin_manager(entry_points=False)
    plugins.register(RefusesAtBuild(), "picky-plugin")
    path = write_spec(spec_doc(norm="picky"))
    spec = explorer.load_spec(path, plugins=plugins)
    with pytest.raises(explorer.PluginError) as info:
        explorer.build_model(spec)
    assert str(info.value) == (f"plugin picky-plugin: norm 'picky' failed to build ({path}: "
                               "components.norm, layer 0): ParamError: 16 is not a power of two")
