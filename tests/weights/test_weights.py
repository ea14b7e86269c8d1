"""Weights in and out: Hugging Face GPT-2 files, the book's checkpoints, explorer's own, export.

The references are transformers' own GPT2LMHeadModel (tiny, random, re-randomized so that zero
biases, unit norms or a forgotten transpose of the square c_proj cannot hide) and the book's
GPTModel from llms_from_scratch. Nothing is downloaded.
"""

import json
import re
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import explorer
from explorer import ExplorerError
from explorer.plugins.checkpoints.hf_gpt2 import GPT2_COMPONENTS, GPT2_FREE_PARAMS
from explorer.weights import export_hf, load_weights, save_checkpoint, spec_from_checkpoint
from tests.helpers import run_cli

transformers = pytest.importorskip("transformers")
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

# The tokenizer is raw bytes, so the CLI's samples analysis runs on a 256-row vocabulary.
SIZES = {"vocab_size": 256, "context_length": 32, "emb_dim": 32, "n_heads": 4, "n_layers": 2}
HF_SPEC = {"name": "tiny-gpt2", "seed": 123, "tokenizer": "bytes",
           "model": {**SIZES, "qkv_bias": True, "drop_rate": 0.1},
           "components": {"norm": "layernorm", "activation": "gelu_tanh", "ffn": "mlp",
                          "attention": "mha", "positional": "learned", "residual": "pre_norm",
                          "weight_tying": "tied"}}
BOOK_CFG = {"vocab_size": 256, "context_length": 32, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
            "drop_rate": 0.0, "qkv_bias": False}


def randomize(model, seed=0):
    """Every parameter away from its initial value: matrices and biases N(0, 0.2), norms ~U(0.5, 1.5)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("ln_" in name or "norm" in name) and ("weight" in name or "scale" in name):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def hf_model():
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=32, vocab_size=256,
                     bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    return randomize(GPT2LMHeadModel(cfg))


@pytest.fixture(scope="module")
def hf_dir(hf_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf")
    hf_model.save_pretrained(out)
    return out


@pytest.fixture
def hf_spec(write_spec):
    return lambda **changes: explorer.load_spec(write_spec(HF_SPEC), overrides=[
        f"{k}={v}" for k, v in changes.items()])


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(1))


def hf_logits(model, tokens):
    with torch.no_grad():
        return model(tokens).logits


def logits(model, tokens):
    with torch.no_grad():
        return model.eval()(tokens)


# -- Hugging Face checkpoints ----------------------------------------------------------------

def _layout(kind, hf_model, hf_dir, tmp_path):
    if kind == "directory":
        return hf_dir
    if kind == "safetensors file":
        return hf_dir / "model.safetensors"
    state = dict(hf_model.state_dict())  # lm_head.weight included, as older .bin saves have it
    for i in range(2):  # the causal-mask buffers older transformers versions saved
        state[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 32, 32))
        state[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    if kind == "GPT2Model .bin, no prefix":  # what GPT2Model (no LM head) saves
        state = {k.removeprefix("transformer."): v for k, v in state.items() if k != "lm_head.weight"}
    (tmp_path / "bin").mkdir()
    torch.save(state, tmp_path / "bin" / "pytorch_model.bin")
    return tmp_path / "bin"


@pytest.mark.parametrize("layout", ["directory", "safetensors file", "pytorch_model.bin",
                                    "GPT2Model .bin, no prefix"])
def test_hf_checkpoint_gives_transformers_logits(layout, hf_model, hf_dir, hf_spec, tokens, tmp_path):
    path = _layout(layout, hf_model, hf_dir, tmp_path)
    model = explorer.load_model(hf_spec(), path)
    torch.testing.assert_close(logits(model, tokens), hf_logits(hf_model, tokens))


def test_conv1d_transpose_and_qkv_split(hf_model, hf_dir, hf_spec):
    model = explorer.load_model(hf_spec(), hf_dir)
    c_attn = hf_model.transformer.h[1].attn.c_attn
    att = model.trf_blocks[1].att
    assert torch.equal(att.W_key.weight, c_attn.weight[:, 32:64].T)  # Conv1D is (in, out)
    assert torch.equal(att.W_value.bias, c_attn.bias[64:])
    assert torch.equal(att.out_proj.weight, hf_model.transformer.h[1].attn.c_proj.weight.T)
    assert model.out_head.weight is model.tok_emb.weight


def test_greedy_generation_matches_hf_generate(hf_model, hf_dir, hf_spec, tokens):
    model = explorer.load_model(hf_spec(), hf_dir).eval()
    prompt = tokens[:, :5]
    ours = explorer.generate(model, prompt, max_new_tokens=12)
    theirs = hf_model.generate(prompt, max_new_tokens=12, do_sample=False, min_new_tokens=12,
                               attention_mask=torch.ones_like(prompt), pad_token_id=0)
    assert torch.equal(ours, theirs)


def test_cli_weights_samples_are_hf_greedy_tokens(capsys, hf_model, hf_dir, write_spec):
    code, out, err = run_cli(capsys, "build", write_spec(HF_SPEC), "--weights", hf_dir,
                         "--only", "samples", "--format", "json")
    assert code == 0, err
    sample = json.loads(out)["analyses"]["samples"]["samples"][0]
    prompt = torch.tensor([list(b"Hello, I am")])
    expected = hf_model.generate(prompt, max_new_tokens=6, do_sample=False, min_new_tokens=6,
                                 attention_mask=torch.ones_like(prompt), pad_token_id=0)
    assert sample["token_ids"] == expected[0].tolist()


def test_hf_into_other_architecture_is_refused(hf_dir, hf_spec):
    # post_norm has exactly GPT-2's tensors; only the spec check stops a silent wrong model.
    with pytest.raises(ExplorerError, match=r"cannot load a Hugging Face GPT-2 checkpoint into this "
                                            r"spec: components\.residual is post_norm; GPT-2 has "
                                            r"only pre_norm$"):
        explorer.load_model(hf_spec(**{"components.residual": "post_norm"}), hf_dir)


def test_hf_config_head_count_is_checked(hf_dir, hf_spec):
    # 2 heads of 16 have the same tensors as 4 heads of 8: only config.json tells them apart.
    with pytest.raises(ExplorerError, match=r"config\.json has n_head: 4 but the spec has "
                                            r"model\.n_heads: 2; set model\.n_heads: 4"):
        explorer.load_model(hf_spec(**{"model.n_heads": 2}), hf_dir)


# -- the one-line mismatch errors ------------------------------------------------------------

def test_qkv_bias_mismatch_names_the_tensor_and_key(hf_dir, hf_spec):
    with pytest.raises(ExplorerError, match=(
            r"model\.safetensors: checkpoint has trf_blocks\.0\.att\.W_query\.bias "
            r"\(transformer\.h\.0\.attn\.c_attn\.bias\) but the spec has model\.qkv_bias: false; "
            r"set model\.qkv_bias: true$")):
        explorer.load_model(hf_spec(**{"model.qkv_bias": "false"}), hf_dir)


def test_tied_checkpoint_into_untied_spec(hf_dir, hf_spec):
    with pytest.raises(ExplorerError, match=r"checkpoint has no out_head\.weight \[256, 32\] \(tied to "
                                            r"tok_emb\.weight\) but the spec has components\."
                                            r"weight_tying: none; set components\.weight_tying: tied$"):
        explorer.load_model(hf_spec(**{"components.weight_tying": "none"}), hf_dir)


def test_context_length_mismatch(hf_dir, hf_spec):
    with pytest.raises(ExplorerError, match=r"checkpoint has pos_emb\.weight \(transformer\.wpe\.weight\) "
                                            r"with shape \[32, 32\] but the spec makes \[16, 32\]; "
                                            r"set model\.context_length: 32$"):
        explorer.load_model(hf_spec(**{"model.context_length": 16}), hf_dir)


@pytest.fixture
def book_checkpoint(tmp_path):
    """A book GPTModel with random weights, saved as the book does (torch.save of state_dict)."""
    from llms_from_scratch.ch04 import GPTModel

    torch.manual_seed(5)
    book = randomize(GPTModel(BOOK_CFG), seed=5)
    path = tmp_path / "model.pth"
    torch.save(book.state_dict(), path)
    return book, path


@pytest.fixture
def book_spec(write_spec):
    def make(*overrides):
        doc = {"name": "tiny-book", "tokenizer": "bytes", "model": {**SIZES, "drop_rate": 0.0},
               "components": {**HF_SPEC["components"], "weight_tying": "none"}}
        return explorer.load_spec(write_spec(doc), overrides=overrides)
    return make


def test_book_checkpoint_loads_bit_for_bit(book_checkpoint, book_spec, tokens):
    book, path = book_checkpoint
    # The manual paths are the book's computation, so eval-mode logits are bit-identical.
    model = explorer.load_model(book_spec("components.attention.impl=manual", "components.norm.impl=manual", "components.activation.impl=manual"), path)
    assert torch.equal(logits(model, tokens), logits(book, tokens))


def test_book_training_checkpoint_with_optimizer_loads(book_checkpoint, book_spec, tokens, tmp_path):
    book, _ = book_checkpoint
    opt = torch.optim.AdamW(book.parameters())
    path = tmp_path / "model_and_optimizer.pth"  # the book's chapter-5 layout
    torch.save({"model_state_dict": book.state_dict(), "optimizer_state_dict": opt.state_dict()}, path)
    model = explorer.load_model(book_spec("components.attention.impl=manual", "components.norm.impl=manual", "components.activation.impl=manual"), path)
    assert torch.equal(logits(model, tokens), logits(book, tokens))


@pytest.mark.parametrize("overrides, message", [
    (["model.qkv_bias=true"], r"checkpoint has no trf_blocks\.0\.att\.W_query\.bias \[32\] but the "
                              r"spec has model\.qkv_bias: true; set model\.qkv_bias: false$"),
    (["components.weight_tying=tied"], r"checkpoint has out_head\.weight \(separate from tok_emb\.weight\) but "
                                       r"the spec has components\.weight_tying: tied; set components\.weight_tying: none$"),
    (["model.emb_dim=16"], r"checkpoint has tok_emb\.weight with shape \[256, 32\] but the spec makes "
                           r"\[256, 16\]; set model\.emb_dim: 32$"),
    (["model.vocab_size=300"], r"tok_emb\.weight with shape \[256, 32\] .*set model\.vocab_size: 256$"),
    (["components.ffn.expansion=2"], r"checkpoint has trf_blocks\.0\.ff\.layers\.0\.weight with shape "
                                     r"\[128, 32\] but the spec makes \[64, 32\]; set components\.ffn\.expansion: 4$"),
    (["components.ffn.bias=false"], r"checkpoint has trf_blocks\.0\.ff\.layers\.0\.bias but the spec has "
                                    r"components\.ffn\.bias: false; set components\.ffn\.bias: true$"),
    (["model.n_layers=3"], r"checkpoint has no trf_blocks\.2\.att\.W_query\.weight \(it has 2 blocks\) "
                           r"but the spec has model\.n_layers: 3; set model\.n_layers: 2$"),
    (["model.n_layers=1"], r"checkpoint has trf_blocks\.1\.att\.W_query\.weight but the spec has "
                           r"model\.n_layers: 1; set model\.n_layers: 2$"),
])
def test_book_checkpoint_mismatches(book_checkpoint, book_spec, overrides, message):
    _, path = book_checkpoint
    with pytest.raises(ExplorerError, match=message):
        explorer.load_model(book_spec(*overrides), path)


def test_missing_key_is_named(book_checkpoint, book_spec, tmp_path):
    book, _ = book_checkpoint
    state = book.state_dict()
    del state["trf_blocks.1.norm2.shift"]
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(ExplorerError, match=r"cut\.pth: checkpoint has no trf_blocks\.1\.norm2\.shift "
                                            r"\[32\], which the model needs \(the spec's "
                                            r"components\.norm is layernorm\)"):
        explorer.load_model(book_spec(), tmp_path / "cut.pth")


def test_cli_mismatch_is_one_line_exit_2(capsys, hf_dir, write_spec):
    doc = {**HF_SPEC, "model": {**HF_SPEC["model"], "qkv_bias": False}}
    code, out, err = run_cli(capsys, "build", write_spec(doc), "--weights", hf_dir, "--only", "params")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "set model.qkv_bias: true" in err


# -- never unpickle --------------------------------------------------------------------------

class Exploit:
    marker = None

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(book_spec, tmp_path):
    Exploit.marker = tmp_path / "pwned"
    torch.save({"tok_emb.weight": Exploit()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ExplorerError, match=r"refused: the file holds Python objects.*weights_only=True"):
        explorer.load_model(book_spec(), tmp_path)
    assert not Exploit.marker.exists()


def test_unknown_and_damaged_files(book_spec, tmp_path):
    save_file({"encoder.weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ExplorerError, match=r"no registered checkpoint format recognises it \(it has "
                                            r"encoder\.weight\); formats: hf-gpt2, (hf-[a-z0-9-]+, )+"
                                            r"book"):
        explorer.load_model(book_spec(), tmp_path / "other.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ExplorerError, match=r"junk\.pth: not a readable torch checkpoint"):
        explorer.load_model(book_spec(), tmp_path / "junk.pth")
    with pytest.raises(ExplorerError, match=r"nowhere: no such file or directory"):
        explorer.load_model(book_spec(), tmp_path / "nowhere")


def test_load_model_builds_then_loads_and_build_model_reads_no_file(book_spec, tmp_path,
                                                                  monkeypatch):
    """Model assembly does no I/O: build_model takes no weights; load_model, a layer above it,
    builds (as build_model at the same seed) and loads, refusing a path without a checkpoint
    before it builds anything."""
    import inspect

    from explorer.weights import loading

    assert "weights" not in inspect.signature(explorer.build_model).parameters
    spec = book_spec()
    built = explorer.build_model(spec, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(explorer.load_model(spec, None, seed=5)
                                                 .state_dict().values(),
                                                 built.state_dict().values()))
    randomize(built)
    torch.save(built.state_dict(), tmp_path / "model.pth")
    loaded = explorer.load_model(spec, tmp_path / "model.pth", seed=9)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 built.state_dict().values()))

    def no_build(*args, **kwargs):
        raise AssertionError("built before the path was checked")

    monkeypatch.setattr(loading, "build_model", no_build)
    with pytest.raises(ExplorerError, match=r"nowhere: no such file or directory"):
        explorer.load_model(spec, tmp_path / "nowhere")


# -- explorer's own checkpoints --------------------------------------------------------------

def test_explorer_checkpoint_round_trip(capsys, write_spec, tokens, tmp_path):
    doc = {**HF_SPEC, "components": {**HF_SPEC["components"], "norm": {"name": "layernorm", "eps": 1e-6}}}
    spec = explorer.load_spec(write_spec(doc))
    trained = explorer.build_model(spec, seed=7)  # not the spec's seed: the file must supply them
    path = save_checkpoint(trained, spec, tmp_path / "ckpt.safetensors")
    saved = load_file(path)
    assert "out_head.weight" not in saved and "trf_blocks.0.att.mask" not in saved  # tied; buffer

    again = spec_from_checkpoint(path)
    assert again.to_dict() == spec.to_dict()
    model = explorer.load_model(again, path)
    assert torch.equal(logits(model, tokens), logits(trained, tokens))

    code, out, err = run_cli(capsys, "build", path, "--only", "params,samples", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["spec"] == spec.to_dict()
    assert report["analyses"]["params"]["total"] == sum(p.numel() for p in trained.parameters())
    prompt = torch.tensor([list(b"Hello, I am")])
    greedy = explorer.generate(trained.eval(), prompt, max_new_tokens=6)[0].tolist()
    assert report["analyses"]["samples"]["samples"][0]["token_ids"] == greedy


def test_explorer_checkpoint_spec_difference_is_named(write_spec, tmp_path):
    spec = explorer.load_spec(write_spec(HF_SPEC))
    path = save_checkpoint(explorer.build_model(spec), spec, tmp_path / "ckpt.safetensors")
    other = explorer.load_spec(write_spec(HF_SPEC), overrides=["components.norm.eps=1e-6"])
    with pytest.raises(ExplorerError, match=r"checkpoint was saved with components\.norm\.eps: 1e-05 "
                                            r"but the spec has 1e-06; set components\.norm\.eps: 1e-05$"):
        explorer.load_model(other, path)


def test_build_of_a_non_explorer_safetensors_says_what_to_do(capsys, hf_dir):
    code, _, err = run_cli(capsys, "build", hf_dir / "model.safetensors")
    assert code == 2
    assert "has no explorer spec in its metadata" in err and "--weights" in err


# -- export to Hugging Face ------------------------------------------------------------------

def test_export_reloads_in_transformers(hf_model, hf_dir, hf_spec, tokens, tmp_path):
    spec = hf_spec()
    model = explorer.load_model(spec, hf_dir)
    export_hf(model, spec, tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "model.safetensors"]
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    torch.testing.assert_close(hf_logits(back, tokens), logits(model, tokens))
    torch.testing.assert_close(hf_logits(back, tokens), hf_logits(hf_model, tokens))
    assert back.config.attn_pdrop == 0.1 and back.config.n_inner == 128


def test_cli_export_untied_without_qkv_bias(capsys, book_spec, write_spec, tokens, tmp_path):
    """The book's layout: no qkv biases (written as zeros) and a separate head (untied)."""
    spec = book_spec()
    model = randomize(explorer.build_model(spec), seed=3)
    ckpt = save_checkpoint(model, spec, tmp_path / "book.safetensors")
    code, out, err = run_cli(capsys, "export", ckpt, "--to", "hf", tmp_path / "out")
    assert code == 0, err
    assert "wrote" in out
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["tie_word_embeddings"] is False
    assert not load_file(tmp_path / "out" / "model.safetensors")["transformer.h.0.attn.c_attn.bias"].any()
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    assert back.lm_head.weight is not back.transformer.wte.weight
    torch.testing.assert_close(hf_logits(back, tokens), logits(model, tokens))
    # ... and back into the book's spec: the all-zero qkv biases are no biases at all.
    again = explorer.load_model(spec, tmp_path / "out")
    assert torch.equal(logits(again, tokens), logits(model, tokens))


def test_cli_export_to_explorer_checkpoint(capsys, hf_model, hf_dir, write_spec, tokens, tmp_path):
    code, _, err = run_cli(capsys, "export", write_spec(HF_SPEC), "--weights", hf_dir,
                       "--to", "explorer", tmp_path / "gpt2.safetensors")
    assert code == 0, err
    saved = tmp_path / "gpt2.safetensors"
    model = explorer.load_model(spec_from_checkpoint(saved), saved)
    torch.testing.assert_close(logits(model, tokens), hf_logits(hf_model, tokens))


def test_cli_export_json_names_every_file_it_wrote(capsys, write_spec, tmp_path):
    """--format json: stdout is one object; its files are what is on disk (shards, their index
    and config.json) and its bytes their sizes' sum. Without --weights the note that the weights
    are the seed's initial ones is in the object, not a line of its own."""
    spec_path = write_spec({**HF_SPEC, "seed": 7})
    code, out, err = run_cli(capsys, "export", spec_path, "--to", "hf", tmp_path / "out",
                         "--max-shard-size", "20kB", "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    on_disk = sorted(str(p) for p in (tmp_path / "out").iterdir())
    assert sorted(result["files"]) == on_disk and len(on_disk) > 3  # config, index, shards
    assert result["bytes"] == sum(os.path.getsize(p) for p in on_disk)
    assert result == {"format": "hf", "out": str(tmp_path / "out"), "files": result["files"],
                      "bytes": result["bytes"], "initial_weights": True, "seed": 7}
    # The text output of the same export: the note, then a "wrote" line per file.
    code, text, err = run_cli(capsys, "export", spec_path, "--to", "hf", tmp_path / "again",
                          "--max-shard-size", "20kB")
    assert code == 0, err
    assert text.splitlines() == [
        "no --weights: exporting the initial weights of seed 7 (untrained)",
        *(f"wrote {path.replace(str(tmp_path / 'out'), str(tmp_path / 'again'))}"
          for path in result["files"])]


def test_cli_export_json_with_weights(capsys, hf_dir, write_spec, tmp_path):
    out_path = tmp_path / "gpt2.safetensors"
    code, out, err = run_cli(capsys, "export", write_spec(HF_SPEC), "--weights", hf_dir,
                         "--to", "explorer", out_path, "--format", "json")
    assert code == 0, err
    assert json.loads(out) == {"format": "explorer", "out": str(out_path),
                               "files": [str(out_path)], "bytes": out_path.stat().st_size,
                               "initial_weights": False, "seed": HF_SPEC["seed"]}
    # A checkpoint given as SPEC supplies its own weights: they are not the initial ones.
    code, out, err = run_cli(capsys, "export", out_path, "--to", "hf", tmp_path / "hf",
                         "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["initial_weights"] is False
    assert sorted(result["files"]) == sorted(str(p) for p in (tmp_path / "hf").iterdir())


def _non_gpt2_choices():
    """Every registered component (and non-default parameter) GPT2LMHeadModel cannot express."""
    registry = explorer.get_plugin_manager().registry()
    cases = []
    for (kind, name), comp in sorted(registry.components.items()):
        if kind not in GPT2_COMPONENTS:
            continue
        if name != GPT2_COMPONENTS[kind]:
            cases.append((f"components.{kind}={name}", rf"components\.{kind} is {name}; "
                                                       rf"GPT-2 has only {GPT2_COMPONENTS[kind]}"))
            continue
        for p in comp.params:
            if p.name in GPT2_FREE_PARAMS.get(kind, ()) or p.numerics_only:
                continue
            if p.choices:
                value = next(c for c in p.choices if c != p.default)
            elif p.type is bool:
                value = not p.default
            elif p.type is int:
                value = p.default + 2
            else:
                continue
            shown = json.dumps(value) if not isinstance(value, str) else value
            cases.append((f"components.{kind}.{p.name}={shown}",
                          rf"components\.{kind}\.{p.name} is {shown}; GPT-2 has only"))
    return cases


@pytest.mark.parametrize("override, reason", _non_gpt2_choices())
def test_export_refuses_what_gpt2_cannot_express(capsys, hf_dir, write_spec, tmp_path, override, reason):
    code, out, err = run_cli(capsys, "export", write_spec(HF_SPEC), "--set", override,
                         "--weights", hf_dir, "--to", "hf", tmp_path / "out")
    assert code == 2, err
    assert err.strip().count("\n") == 0
    # The Llama-family format is refused too (its reason follows GPT-2's).
    assert re.search(rf"cannot export .* no format can express it \(Hugging Face GPT-2: {reason}",
                     err)
    assert not (tmp_path / "out").exists()


def test_interrupted_export_leaves_no_partial_file(hf_dir, hf_spec, tmp_path, monkeypatch):
    import safetensors.torch

    spec = hf_spec()
    model = explorer.load_model(spec, hf_dir)
    export_hf(model, spec, tmp_path / "out")
    before = (tmp_path / "out" / "model.safetensors").read_bytes()

    def interrupted(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_hf(randomize(model, seed=9), spec, tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "model.safetensors"]
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == before


def test_weights_into_meta_model_is_refused(hf_dir, hf_spec):
    spec = hf_spec()
    with pytest.raises(ExplorerError, match="meta device"):
        load_weights(explorer.build_model(spec, device="meta"), spec, hf_dir)


def test_cli_compare_with_weights_per_spec(capsys, hf_model, hf_dir, write_spec):
    spec = write_spec(HF_SPEC)
    code, out, err = run_cli(capsys, "compare", spec, spec, "--weights", hf_dir, "--weights", hf_dir,
                         "--only", "samples", "--format", "json")
    assert code == 0, err
    samples = [r["analyses"]["samples"]["samples"][0]["token_ids"] for r in json.loads(out)["reports"]]
    prompt = torch.tensor([list(b"Hello, I am")])
    expected = hf_model.generate(prompt, max_new_tokens=6, do_sample=False, min_new_tokens=6,
                                 attention_mask=torch.ones_like(prompt), pad_token_id=0)
    assert samples == [expected[0].tolist()] * 2
    code, _, err = run_cli(capsys, "compare", spec, spec, spec, "--weights", hf_dir, "--weights", hf_dir)
    assert code == 2 and "--weights: given 2 times for 3 specs" in err
