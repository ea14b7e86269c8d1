"""The explorer command: build, plugins, JSON output, overrides, and errors as one line."""

import json
import subprocess
import sys

import pytest

from tests.helpers import run_cli


TINY = ("model: {vocab_size: 50257, context_length: 32, emb_dim: 16, n_heads: 4, n_layers: 2}\n"
        "seed: 123\n")


@pytest.fixture
def tiny(write_spec):
    return str(write_spec(TINY, name="tiny.yaml"))


def test_build_json_carries_exact_integers(capsys):
    code, out, err = run_cli(capsys, "build", "specs/gpt2_small.yaml", "--only", "params,memory",
                         "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert list(report["analyses"]) == ["params", "memory"]
    assert report["analyses"]["params"]["total"] == 163_009_536
    assert report["analyses"]["params"]["with_tied_head"] == 124_412_160
    assert report["analyses"]["memory"]["weights_bytes"]["fp32"] == 652_038_144
    assert report["components"]["attention"] == {
        "name": "mha", "params": report["components"]["attention"]["params"],
        "plugin": "explorer.plugins.attention", "distribution": report["components"]["attention"]["distribution"]}


def test_build_text_report_shows_everything(capsys, tiny):
    code, out, err = run_cli(capsys, "build", tiny)
    assert code == 0, err
    for heading in ("components:", "== params ==", "== memory ==", "== gradflow ==", "== samples =="):
        assert heading in out
    assert "layernorm" in out and "explorer.plugins.norm" in out
    assert "'Hello, I am" in out


def test_set_overrides_and_only(capsys, tiny):
    code, out, _ = run_cli(capsys, "build", tiny, "--only", "params", "--format", "json",
                       "--set", "model.n_layers=1", "--set", "components.weight_tying=tied")
    assert code == 0
    report = json.loads(out)
    assert report["spec"]["model"]["n_layers"] == 1
    assert report["analyses"]["params"]["head_tied"] is True
    assert report["components"]["weight_tying"]["name"] == "tied"


def test_plugins_lists_components_with_params_and_provider(capsys):
    code, out, _ = run_cli(capsys, "plugins", "--format", "json")
    assert code == 0
    entries = {(e["kind"], e["name"]): e for e in json.loads(out)["components"]}
    for kind, name in [("norm", "layernorm"), ("activation", "gelu_tanh"), ("ffn", "mlp"),
                       ("attention", "mha"), ("positional", "learned"), ("residual", "pre_norm"),
                       ("weight_tying", "none"), ("weight_tying", "tied"), ("analysis", "params"),
                       ("analysis", "memory"), ("analysis", "gradflow"), ("analysis", "samples")]:
        assert entries[(kind, name)]["distribution"].startswith("explorer ")
    eps = entries[("norm", "layernorm")]["params"][0]
    assert (eps["name"], eps["type"], eps["default"]) == ("eps", "float", 1e-5)
    code, out, _ = run_cli(capsys, "plugins", "--kind", "norm")
    assert "layernorm" in out and "eps: float = 1e-05" in out and "mha" not in out


@pytest.mark.parametrize("args, fragment", [
    (["build", "nope.yaml"], "nope.yaml: no such file"),
    (["build", "specs/gpt2_small.yaml", "--set", "components.norm=layernrom"],
     "components.norm: unknown norm component 'layernrom'; did you mean 'layernorm'? "
     "registered: layernorm, none, rmsnorm"),
    (["build", "specs/gpt2_small.yaml", "--only", "parms"], "unknown analysis 'parms'"),
    (["plugins", "--kind", "norms"], "--kind: unknown kind 'norms'; did you mean 'norm'? "
                                      "registered: norm, activation"),
])
def test_errors_are_one_line_with_exit_code_2(capsys, args, fragment):
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_real_process_exit_code_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {vocab_size: 97, context_length: 32, emb_dim: 16, n_head: 4, n_layers: 2}\n")
    proc = subprocess.run([sys.executable, "-m", "explorer", "build", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"Error: {bad}: model.n_head: unknown key; did you mean 'n_heads'? valid keys: vocab_size, "
        "context_length, emb_dim, n_heads, n_layers, qkv_bias, drop_rate, dropout, "
        "scale_embeddings, logit_softcap, parametrization, base_width")
    assert proc.stdout == ""


def test_help_lists_commands(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "build" in out and "plugins" in out


def test_corpus_option_sets_the_train_corpus(capsys, tmp_path):
    corpus = tmp_path / "my corpus: notes.txt"  # a path YAML would misread unquoted
    corpus.write_text("x")
    code, out, err = run_cli(capsys, "build", "specs/tiny.yaml", "--only", "params", "--corpus",
                         str(corpus), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["spec"]["analyses"]["train"]["corpus"] == str(corpus)
    code, _, err = run_cli(capsys, "build", "specs/tiny.yaml", "--only", "train", "--corpus",
                       str(tmp_path / "missing.txt"))
    assert code == 1 and f"corpus {tmp_path / 'missing.txt'}: no such file" in err


def test_build_header_and_json_show_the_overrides(capsys):
    # The header used to name the spec file alone, as if nothing had been overridden.
    args = ["build", "specs/tiny.yaml", "--only", "params", "--set", "model.n_layers=2",
            "--set", "analyses.samples.prompts=[Hi there]"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert out.splitlines()[0] == ("tiny  (specs/tiny.yaml --set model.n_layers=2 "
                                   "--set 'analyses.samples.prompts=[Hi there]')")
    code, out, err = run_cli(capsys, *args, "--format", "json")
    assert json.loads(out)["overrides"] == ["model.n_layers=2", "analyses.samples.prompts=[Hi there]"]
    code, out, _ = run_cli(capsys, "build", "specs/tiny.yaml", "--only", "params")
    assert out.splitlines()[0] == "tiny  (specs/tiny.yaml)"


def test_torch_lower_bound_covers_every_api_used():
    import configparser
    import re

    # The torch release that introduced each API the package or its tests use.
    introduced = {
        "F.scaled_dot_product_attention(enable_gqa=...) (gqa)": (2, 5),
        "torch.nn.RMSNorm (tests)": (2, 4),
        "torch.utils.flop_counter.FlopCounterMode (flops)": (2, 1),
    }
    cfg = configparser.ConfigParser()
    cfg.read("setup.cfg")
    bound = re.search(r"torch>=(\d+)\.(\d+)", cfg["options"]["install_requires"])
    assert bound, "setup.cfg states a lower bound for torch"
    assert tuple(map(int, bound.groups())) >= max(introduced.values())
    pinned = re.search(r"torch==(\d+)\.(\d+)", open("constraints.txt").read())
    assert tuple(map(int, pinned.groups())) >= tuple(map(int, bound.groups()))
