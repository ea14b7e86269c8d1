"""Checkpoint formats as plugins, the spec key a mismatch names, and what export writes.

A third-party format (a toy layout written here) is detected, loaded, checked, exported and
listed with no core change; the hint for a tensor that does not fit is found for built-in and
third-party components alike; numerics-only parameters do not stop an explorer checkpoint; the
files export writes get an ordinary mode; export without --weights writes the seeded model.
"""

import json
import os
import textwrap

import pytest
import torch
from safetensors.torch import save_file

import explorer
from explorer import CheckpointFormat, ExplorerError, hookimpl
from explorer.spec.loading import spec_from_dict
from explorer.weights import (check_exportable, export, export_hf, load_weights, save_checkpoint,
                              spec_from_checkpoint, targets)
from tests.helpers import ROOT, load_shrunk, run_cli, shrink, slow_marked
from tests.helpers.hf_reference import randomize

# The bytes tokenizer has 256 symbols: vocab_size 256 keeps the samples analysis valid.
SIZES = {"vocab_size": 256, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2}
TOY_PLUGIN = textwrap.dedent('''
    """A toy checkpoint format (explorer's names under toy/, dots as slashes) and a toy FFN."""

    from torch import nn

    from explorer import CheckpointFormat, Component, Param, hookimpl
    from explorer.weights import Mismatch

    PREFIX = "toy/"


    def detect(ckpt):
        return bool(ckpt.names) and all(n.startswith(PREFIX) for n in ckpt.names)


    def to_model(ckpt, model, spec):
        return {n[len(PREFIX):].replace("/", "."): (n, t) for n, t in ckpt.tensors.items()}


    def check(ckpt, spec):
        heads = ckpt.metadata.get("toy.heads")
        if heads is not None and int(heads) != spec.model.n_heads:
            yield Mismatch("value", source="toy header", field="heads", have=int(heads),
                           key="model.n_heads", current=spec.model.n_heads, value=int(heads))


    def unsupported(spec):
        tying = spec.components["weight_tying"].name
        if tying != "none":
            return "components.weight_tying", f"is {tying}; toy files hold an untied head"
        return None


    def from_model(model, spec):
        return {PREFIX + n.replace(".", "/"): p for n, p in model.named_parameters()}


    class ToyFFN(nn.Module):
        def __init__(self, ctx, hidden):
            super().__init__()
            self.up = nn.Linear(ctx.config.emb_dim, hidden)
            self.down = nn.Linear(hidden, ctx.config.emb_dim)

        def forward(self, x):
            return self.down(self.up(x).relu())


    @hookimpl
    def explorer_checkpoint_formats():
        return [CheckpointFormat(name="toy", title="Toy", description="A toy layout for tests.",
                                 detect=detect, to_model=to_model, check=check,
                                 unsupported=unsupported, target="toy", from_model=from_model)]


    @hookimpl
    def explorer_components():
        return [Component(kind="ffn", name="toyffn", factory=ToyFFN,
                          params=(Param("hidden", int, 8, "hidden width"),),
                          description="Linear -> relu -> Linear of any width.")]
''')


def logits(model, tokens=torch.arange(12).reshape(2, 6)):
    with torch.no_grad():
        return model.eval()(tokens)


def doc(components=None, **model):
    return {"name": "fmt", "seed": 123, "tokenizer": "bytes", "model": {**SIZES, **model},
            "components": components or {}}


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "toy_format.py"
    path.write_text(TOY_PLUGIN)
    return path


@pytest.fixture
def toy_spec(toy, write_spec):
    def make(components=None, **model):
        return explorer.load_spec(write_spec(doc(components, **model)),
                                  plugins=explorer.get_plugin_manager(plugins=[str(toy)]))
    return make


def save_toy(model, path, heads=None):
    tensors = {"toy/" + n.replace(".", "/"): p.detach().contiguous()
               for n, p in model.named_parameters()}
    save_file(tensors, path, metadata={"toy.heads": str(heads)} if heads else None)
    return path


# -- a third-party format, with no core change ----------------------------------------------

def test_third_party_format_is_detected_and_loaded(toy_spec, tmp_path):
    spec = toy_spec()
    trained = explorer.build_model(spec, seed=7)  # not the spec's seed: the file must supply them
    path = save_toy(trained, tmp_path / "weights.safetensors", heads=4)
    model = explorer.load_model(spec, path)
    assert torch.equal(logits(model), logits(trained))


def test_third_party_format_checks_and_refusals_are_worded_by_the_core(toy_spec, tmp_path):
    spec = toy_spec()
    path = save_toy(explorer.build_model(spec), tmp_path / "weights.safetensors", heads=2)
    with pytest.raises(ExplorerError, match=r"weights\.safetensors: toy header has heads: 2 but the "
                                            r"spec has model\.n_heads: 4; set model\.n_heads: 2$"):
        explorer.load_model(spec, path)
    with pytest.raises(ExplorerError, match=r"cannot load a Toy checkpoint into this spec: "
                                            r"components\.weight_tying is tied; toy files hold"):
        explorer.load_model(toy_spec({"weight_tying": "tied"}), path)
    # A tensor that does not fit names its name in the file, and the spec key, found generically.
    with pytest.raises(ExplorerError, match=r"checkpoint has trf_blocks\.0\.att\.W_query\.bias "
                                            r"\(toy/trf_blocks/0/att/W_query/bias\) but the spec has "
                                            r"model\.qkv_bias: false; set model\.qkv_bias: true$"):
        explorer.load_model(toy_spec(), save_toy(
            explorer.build_model(toy_spec(qkv_bias=True)), tmp_path / "bias.safetensors"))


def test_third_party_format_exports_and_lists_on_the_cli(capsys, toy, write_spec, tmp_path):
    spec_path = write_spec(doc())
    code, out, err = run_cli(capsys, "export", spec_path, "-p", toy, "--to", "toy", tmp_path / "out")
    assert code == 0, err
    written = tmp_path / "out" / "model.safetensors"
    assert f"wrote {written}" in out
    spec = explorer.load_spec(spec_path, plugins=explorer.get_plugin_manager(plugins=[str(toy)]))
    assert torch.equal(logits(explorer.load_model(spec, written)),
                       logits(explorer.build_model(spec)))

    code, out, err = run_cli(capsys, "plugins", "-p", toy, "--kind", "checkpoint_format",
                         "--format", "json")
    assert code == 0, err
    entries = {e["name"]: e for e in json.loads(out)["components"]}
    # the detection order
    assert list(entries) == ["hf-gpt2", "hf-deepseek", "hf-mamba", "hf-qwen3-next", "hf-llama",
                             "book", "toy"]
    assert entries["toy"]["target"] == "toy" and entries["toy"]["plugin"] == str(toy.resolve())
    code, out, _ = run_cli(capsys, "plugins", "-p", toy, "--kind", "checkpoint_format")
    assert "  toy              A toy layout for tests." in out
    assert "reads: yes; export: --to toy" in out


def test_unknown_export_target_lists_the_registered_ones(capsys, write_spec, tmp_path):
    code, out, err = run_cli(capsys, "export", write_spec(doc()), "--to", "onnx", tmp_path / "out")
    assert code == 2 and out == ""
    assert err == ("Error: --to: unknown export target 'onnx'; registered: explorer, hf; "
                   "explorer plugins --kind checkpoint_format lists the formats\n")


class Clash:
    @hookimpl
    def explorer_checkpoint_formats(self):
        return [CheckpointFormat(name="book", description="again", detect=bool, to_model=dict)]


class Raises:
    @hookimpl
    def explorer_checkpoint_formats(self):
        raise RuntimeError("boom")


class HalfFormat:
    @hookimpl
    def explorer_checkpoint_formats(self):
        return [CheckpointFormat(name="half", detect=bool)]


@pytest.mark.parametrize("plugin, message", [
    (Clash(), "checkpoint format 'book' is already registered by explorer.plugins.checkpoints; "
              "this one was skipped"),
    (Raises(), "explorer_checkpoint_formats raised RuntimeError: boom"),
    (HalfFormat(), "checkpoint format 'half' gives only one of detect and to_model; reading "
                   "needs both"),
])
def test_a_bad_format_plugin_spoils_only_itself(plugin, message):
    plugins = explorer.get_plugin_manager()
    plugins.register(plugin, "bad")
    registry = plugins.registry()
    assert registry.broken == {"bad": message}
    assert list(registry.formats) == ["hf-gpt2", "hf-deepseek", "hf-mamba", "hf-qwen3-next",
                                      "hf-llama", "book"]


# -- the spec key to change, found by rebuilding on the meta device --------------------------

def saved_state(spec, path):
    """A torch.save'd state_dict of the model ``spec`` describes (read as the book's format)."""
    torch.save(explorer.build_model(spec).state_dict(), path)
    return path


@pytest.mark.parametrize("saved, loaded, message", [
    ({"attention": {"name": "gqa", "n_kv_heads": 2}}, {"attention": "gqa"},
     r"checkpoint has trf_blocks\.0\.att\.W_key\.weight with shape \[16, 32\] but the spec makes "
     r"\[8, 32\]; set components\.attention\.n_kv_heads: 2$"),
    ({"norm": "rmsnorm"}, {},
     r"checkpoint has no trf_blocks\.0\.norm1\.scale \[32\] but the spec has components\.norm: "
     r"layernorm; set components\.norm: rmsnorm$"),
    ({"ffn": {"name": "glu", "hidden": 40}}, {"ffn": "glu"},
     r"checkpoint has trf_blocks\.0\.ff\.fc_1\.weight with shape \[40, 32\] but the spec makes "
     r"\[256, 32\]; set components\.ffn\.hidden: 40$"),
    ({"attention": {"name": "mha", "out_bias": False}}, {},
     r"checkpoint has no trf_blocks\.0\.att\.out_proj\.bias \[32\] but the spec has "
     r"components\.attention\.out_bias: true; set components\.attention\.out_bias: false$"),
    ({"ffn": {"name": "toyffn", "hidden": 24}}, {"ffn": "toyffn"},  # a third-party component
     r"checkpoint has trf_blocks\.0\.ff\.up\.weight with shape \[24, 32\] but the spec makes "
     r"\[8, 32\]; set components\.ffn\.hidden: 24$"),
])
def test_mismatch_names_the_spec_key_for_any_component(toy_spec, tmp_path, saved, loaded, message):
    path = saved_state(toy_spec(saved), tmp_path / "model.pth")
    spec = toy_spec(loaded)
    model = explorer.build_model(spec)
    before = torch.random.get_rng_state()
    with pytest.raises(ExplorerError, match=message):
        load_weights(model, spec, path)
    assert torch.equal(torch.random.get_rng_state(), before)  # the meta builds left it alone


def test_a_damaged_file_names_the_component_when_no_change_fits(toy_spec, tmp_path):
    spec = toy_spec()
    state = explorer.build_model(spec).state_dict()
    state["trf_blocks.1.ff.layers.0.weight"] = torch.zeros(100, 7)
    torch.save(state, tmp_path / "model.pth")
    with pytest.raises(ExplorerError, match=r"checkpoint has trf_blocks\.1\.ff\.layers\.0\.weight with "
                                            r"shape \[100, 7\] but the spec makes \[128, 32\] \(the "
                                            r"spec's components\.ffn is mlp\); use the ffn the "
                                            r"checkpoint was saved with$"):
        explorer.load_model(spec, tmp_path / "model.pth")


# -- explorer checkpoints: numerics-only parameters are not compared (issue 9, item 5) -------

def test_numerics_only_override_on_a_checkpoint_is_accepted(capsys, write_spec, tmp_path):
    spec = explorer.load_spec(write_spec(doc()))
    trained = explorer.build_model(spec, seed=7)
    path = save_checkpoint(trained, spec, tmp_path / "ckpt.safetensors")
    manual = ["components.attention.impl=manual", "components.norm.impl=manual",
              "components.activation.impl=fused"]
    again = spec_from_checkpoint(path, overrides=manual)
    model = explorer.load_model(again, path)
    assert model.trf_blocks[0].att.impl == "manual"
    torch.testing.assert_close(logits(model), logits(trained))
    code, out, err = run_cli(capsys, "build", path, "--set", manual[0], "--only", "params",
                         "--format", "json")
    assert code == 0, err
    assert json.loads(out)["spec"]["components"]["attention"]["impl"] == "manual"

    code, out, err = run_cli(capsys, "build", path, "--set", "components.norm.eps=1e-6", "--only", "params")
    assert code == 2 and out == ""
    assert err.strip() == (f"Error: {path}: checkpoint was saved with components.norm.eps: 1e-05 but "
                           "the spec has 1e-06; set components.norm.eps: 1e-05")


# -- files that are not checkpoints (issue 9, item 7) ----------------------------------------

def test_a_json_file_is_named_for_what_it_is(capsys, write_spec, tmp_path):
    spec = write_spec(doc())
    (tmp_path / "hf").mkdir()
    config = tmp_path / "hf" / "config.json"
    config.write_text(json.dumps({"model_type": "gpt2", "n_head": 123}))
    code, out, err = run_cli(capsys, "build", spec, "--weights", config, "--only", "params")
    assert code == 2 and out == ""
    assert err.strip() == (f"Error: {config}: a JSON file, not a checkpoint; give the directory "
                           f"that holds it ({tmp_path / 'hf'}) or its weights file "
                           "(model.safetensors, pytorch_model.bin or model.pth)")


@pytest.mark.parametrize("content, what", [
    ("name: x\nmodel: {vocab_size: 256}\n", "a YAML spec, not a checkpoint; give it as SPEC and "
                                            "the weights with --weights"),
    ("just some notes\n", "a text file, not a checkpoint; expected model.safetensors, "
                          "pytorch_model.bin or model.pth"),
    (b"\x00\x01\x02garbage", "not a checkpoint: neither safetensors nor a torch.save file "
                             "(it starts with b'\\x00\\x01\\x02garba')"),
])
def test_other_files_are_named_for_what_they_are(write_spec, tmp_path, content, what):
    path = tmp_path / "weights.bin"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ExplorerError) as info:
        explorer.load_model(explorer.load_spec(write_spec(doc())), path)
    assert str(info.value).startswith(f"{path}: {what}")


# -- what export writes (issue 9, items 6 and 10) --------------------------------------------

@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_exported_files_get_an_ordinary_mode(umask_022, write_spec, tmp_path):
    spec = explorer.load_spec(write_spec(doc()))
    model = explorer.build_model(spec)
    save_checkpoint(model, spec, tmp_path / "x.safetensors")  # export --to explorer
    export_hf(model, spec, tmp_path / "hf")  # export --to hf
    for path in (tmp_path / "x.safetensors", tmp_path / "hf" / "model.safetensors",
                 tmp_path / "hf" / "config.json"):
        assert oct(path.stat().st_mode & 0o777) == oct(0o644), path
    (tmp_path / "x.safetensors").chmod(0o640)  # as open(path, "w"): a file keeps its own mode
    save_checkpoint(model, spec, tmp_path / "x.safetensors")
    assert oct((tmp_path / "x.safetensors").stat().st_mode & 0o777) == oct(0o640)


def test_export_without_weights_writes_the_seeded_model(capsys, write_spec, tmp_path):
    transformers = pytest.importorskip("transformers")
    spec_path = write_spec(doc(components={"weight_tying": "tied"}, qkv_bias=True))
    code, out, err = run_cli(capsys, "export", spec_path, "--to", "hf", tmp_path / "out")
    assert code == 0, err
    assert out.splitlines()[0] == "no --weights: exporting the initial weights of seed 123 (untrained)"
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    tokens = torch.arange(12).reshape(2, 6)
    with torch.no_grad():
        theirs = hf(tokens).logits
    ours = logits(explorer.build_model(explorer.load_spec(spec_path)), tokens)
    torch.testing.assert_close(theirs, ours)
    assert not torch.equal(ours, logits(explorer.build_model(explorer.load_spec(spec_path), seed=1),
                                        tokens))  # the seed decides the weights written


def test_sharded_checkpoint_loads_from_its_directory_or_its_index(write_spec, tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=16, vocab_size=256,
                                  bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(tmp_path / "hf", max_shard_size="40KB")
    assert len(list((tmp_path / "hf").glob("model-*.safetensors"))) > 1
    spec = explorer.load_spec(write_spec(doc(components={"weight_tying": "tied"}, qkv_bias=True)))
    tokens = torch.arange(12).reshape(2, 6)
    with torch.no_grad():
        theirs = hf(tokens).logits
    for path in (tmp_path / "hf", tmp_path / "hf" / "model.safetensors.index.json"):
        torch.testing.assert_close(logits(explorer.load_model(spec, path), tokens), theirs)


# -- every shipped spec through every export format ---------------------------------------------

SHIPPED = sorted((ROOT / "specs").rglob("*.yaml"))
TARGETS = targets(explorer.get_plugin_manager().registry())


def small_ffns(spec):
    """``spec`` with every FFN at most 32 wide and 8 experts (the real models' 14336-wide
    experts would cost seconds); a derived size (hidden 0) stays derived."""
    doc = spec.to_dict()
    for ffn in [doc["components"]["ffn"], *(rule["components"]["ffn"] for rule in
                                            doc.get("layers", []) if "ffn" in rule["components"])]:
        if ffn.get("hidden", 0) > 32:
            ffn["hidden"] = 32
        if ffn.get("n_experts", 0) > 8:
            ffn["n_experts"] = 8
            ffn["top_k"] = min(ffn.get("top_k", 2), 8)  # Qwen3-Next routes to 10 of 512
    return spec_from_dict(doc, source=spec.source)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("path", slow_marked(SHIPPED), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_spec_round_trips_through_every_format_it_exports_to(path, target,
                                                                            tmp_path):
    """Shrunk (tests.helpers.shrink, small FFNs), weights moved off their initialisation,
    exported, read back into the spec's model: the same logits. Derived values (glu's hidden 0,
    which is Llama's rule) are compared as the built model has them, not as the spec writes
    them. A spec the format cannot express is skipped with the exporter's own refusal."""
    spec = small_ffns(load_shrunk(path, shrink(path)))
    try:
        check_exportable(spec, target)
    except ExplorerError as exc:
        pytest.skip(str(exc))
    model = randomize(explorer.build_model(spec))
    gen = torch.Generator().manual_seed(0)
    out = tmp_path / ("model.safetensors" if target == "explorer" else target)
    export(model, spec, target, out)
    ids = torch.randint(0, 300, (2, 16), generator=gen)
    torch.testing.assert_close(logits(explorer.load_model(spec, out), ids),
                               logits(model, ids), atol=1e-5, rtol=0)
