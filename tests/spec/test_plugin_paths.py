"""Plugin paths resolve against the file that wrote them (a base spec, a checkpoint), and each
spec in compare sees only its own plugins plus the installed ones and -p/--plugin."""

import json
import shutil
import sys
from pathlib import Path

import pytest

import explorer
from tests.helpers import run_cli
from tests.helpers import ROOT

EXAMPLE = ROOT / "examples" / "explorer-scalenorm"
MODULE = EXAMPLE / "explorer_scalenorm.py"
TINY = {"vocab_size": 256, "context_length": 16, "emb_dim": 16, "n_heads": 4, "n_layers": 1}


@pytest.fixture(autouse=True)
def forget_plugin_modules():
    yield
    for name in [n for n in sys.modules if n.startswith("explorer_plugin_")]:
        del sys.modules[name]


def write(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def scalenorm_base(tmp_path):
    """base/base.yaml loads the plugin from base/plugins/scalenorm.py, relative to itself."""
    (tmp_path / "base" / "plugins").mkdir(parents=True)
    shutil.copy(MODULE, tmp_path / "base" / "plugins" / "scalenorm.py")
    return write(tmp_path / "base" / "base.yaml",
                 {"name": "base", "tokenizer": "bytes", "model": TINY,
                  "plugins": ["plugins/scalenorm.py"], "components": {"norm": "scalenorm"}})


def test_a_base_specs_plugin_path_is_relative_to_the_base(tmp_path):
    scalenorm_base(tmp_path)
    # The child lives elsewhere: the base's relative path used to be resolved against it.
    child = write(tmp_path / "ablations" / "deep" / "child.yaml",
                  {"extends": "../../base/base.yaml", "name": "child"})
    spec = explorer.load_spec(child)
    plugin = str(tmp_path / "base" / "plugins" / "scalenorm.py")
    assert spec.plugins == (plugin,)
    assert spec.components["norm"].name == "scalenorm"
    assert spec.plugin_manager.registry().provider[("norm", "scalenorm")].plugin == plugin


def test_spec_plugins_hold_resolved_entries_and_to_dict_can_make_them_relative(tmp_path):
    spec_path = write(tmp_path / "s" / "spec.yaml",
                      {"name": "s", "tokenizer": "bytes", "model": TINY,
                       "plugins": [str(Path("..") / "p" / "x.py"), "explorer.plugins.norm"]})
    write(tmp_path / "p" / "x.py", {})  # an empty module (JSON "{}" is a Python expression)
    spec = explorer.load_spec(spec_path)
    assert spec.plugins == (str(tmp_path / "p" / "x.py"), "explorer.plugins.norm")
    assert spec.to_dict()["plugins"] == list(spec.plugins)
    assert spec.to_dict(relative_to=tmp_path / "ckpt")["plugins"] == [
        str(Path("..") / "p" / "x.py"), "explorer.plugins.norm"]


def test_a_checkpoint_keeps_plugin_paths_relative_to_its_folder(tmp_path):
    spec = explorer.load_spec(scalenorm_base(tmp_path))
    model = explorer.build_model(spec)
    checkpoint = tmp_path / "base" / "runs" / "model.safetensors"
    checkpoint.parent.mkdir()
    explorer.save_checkpoint(model, spec, checkpoint)
    from safetensors import safe_open

    with safe_open(str(checkpoint), "pt") as f:
        saved = json.loads(f.metadata()["explorer.spec.loading"])
    assert saved["plugins"] == [str(Path("..") / "plugins" / "scalenorm.py")]

    moved = tmp_path / "elsewhere"  # the folder moves as a whole: the relative path still holds
    shutil.move(tmp_path / "base", moved)
    loaded = explorer.spec_from_checkpoint(moved / "runs" / "model.safetensors")
    assert loaded.plugins == (str(moved / "plugins" / "scalenorm.py"),)
    again = explorer.load_model(loaded, str(moved / "runs" / "model.safetensors"))
    assert all(a.equal(b) for a, b in zip(model.state_dict().values(),
                                          again.state_dict().values()))


def test_compare_validates_each_spec_with_only_its_own_plugins(tmp_path, capsys):
    with_plugin = scalenorm_base(tmp_path)
    # Names scalenorm without loading it: invalid alone, and it used to pass inside compare.
    without = write(tmp_path / "other.yaml", {"name": "other", "tokenizer": "bytes",
                                              "model": TINY, "components": {"norm": "scalenorm"}})
    code, out, err = run_cli(capsys, "build", without, "--only", "params")
    assert code == 2
    code, out, err = run_cli(capsys, "compare", with_plugin, without, "--only", "params")
    assert (code, out) == (2, "")
    assert err.startswith(f"Error: {without}: components.norm: unknown norm component "
                          "'scalenorm'")
    # Given with --plugin it is every spec's.
    code, out, err = run_cli(capsys, "compare", with_plugin, without, "--only", "params",
                         "--plugin", MODULE, "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert [r["components"]["norm"]["name"] for r in result["reports"]] == ["scalenorm"] * 2


def test_compare_api_uses_each_specs_plugin_manager(tmp_path):
    with_plugin = explorer.load_spec(scalenorm_base(tmp_path))
    plain = explorer.load_spec(write(tmp_path / "plain.yaml", {"name": "plain",
                                                               "tokenizer": "bytes", "model": TINY}))
    assert with_plugin.plugin_manager is not plain.plugin_manager
    assert "scalenorm" not in plain.plugin_manager.registry().names("norm")
    result = explorer.compare([with_plugin, plain], only=["params"])
    norms = {r["figure"]: r["values"] for r in result["rows"]}["params.by_kind.norm"]
    assert norms == [3, 3 * 2 * 16]  # ScaleNorm: one scalar per norm; LayerNorm: 2 * emb_dim
