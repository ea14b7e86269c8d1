"""--device and --dtype: names, the one-line refusal of a device torch cannot use, auto's choice,
mixed precision (autocast, float32 master weights, a gradient scaler for float16), bfloat16
training and generation on the CPU, torch.compile, and the accelerator paths (on the meta
device here; on CUDA and MPS when there is one)."""

import json

import pytest
import torch

import explorer
from explorer.training import devices
from explorer.cli import main
from explorer.training.corpus import Corpus
from explorer.model.gpt import GPTModel
from explorer.plugins.analyses.train import render as render_train
from explorer.training.settings import TrainConfig
from explorer.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
MPS = pytest.mark.skipif(not torch.backends.mps.is_available(), reason="no MPS device here")
NO_CUDA = pytest.mark.skipif(torch.backends.cuda.is_built(), reason="this torch has CUDA")
NO_MPS = pytest.mark.skipif(torch.backends.mps.is_built(), reason="this torch has MPS")


# -- names and resolution ---------------------------------------------------------------------

@pytest.mark.parametrize("name, ok", [("cpu", True), ("cuda", True), ("cuda:1", True),
                                      ("mps", True), ("auto", True), ("gpu", False),
                                      ("cuda:", False), ("cpu:0", False), ("CUDA", False), (3, False)])
def test_device_names_are_checked_without_torch(name, ok):
    assert (devices.check_device_name(name) is not None) == ok


@NO_CUDA
def test_cuda_without_cuda_is_one_line():
    with pytest.raises(explorer.ExplorerError) as error:
        devices.resolve_device("cuda")
    assert str(error.value) == (f"--device cuda: cuda requested but torch was built without CUDA "
                                f"(torch {torch.__version__}); use --device cpu")


@NO_MPS
def test_mps_without_mps_is_one_line():
    with pytest.raises(explorer.ExplorerError, match=r"^--device mps: mps requested but torch was "
                                                     r"built without MPS \(torch .*\); use "
                                                     r"--device cpu$"):
        devices.resolve_device("mps")


@pytest.fixture
def fake_cuda(monkeypatch):
    """This torch claims CUDA support with ``visible`` devices (and no MPS)."""
    def set_visible(visible):
        monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: visible > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
        monkeypatch.setattr(torch.backends.mps, "is_built", lambda: False)
    return set_visible


def test_cuda_built_but_no_device_visible(fake_cuda):
    fake_cuda(0)
    with pytest.raises(explorer.ExplorerError, match=r"^--device cuda: cuda requested but no "
                                                     r"CUDA device is visible \(check the driver "
                                                     r"and CUDA_VISIBLE_DEVICES\); use --device "
                                                     r"cpu$"):
        devices.resolve_device("cuda")


def test_a_cuda_index_past_the_visible_devices(fake_cuda):
    fake_cuda(1)
    assert devices.resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(explorer.ExplorerError, match=r"^--device cuda:3: cuda requested but only "
                                                     r"1 CUDA device is visible \(cuda:0..cuda:0\)"):
        devices.resolve_device("cuda:3")


def test_auto_picks_cuda_then_mps_then_cpu(fake_cuda, monkeypatch):
    fake_cuda(2)
    assert devices.resolve_device("auto") == torch.device("cuda")
    fake_cuda(0)
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert devices.resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert devices.resolve_device("auto") == torch.device("cpu")


def test_the_train_setting_names_its_key():
    with pytest.raises(explorer.ExplorerError, match=r"^train.device cuda:7: cuda requested but "):
        devices.resolve_device("cuda:7", "train.device", "device: cpu") if not \
            torch.cuda.device_count() > 7 else pytest.skip("8 CUDA devices here")


# -- the command line: one line, exit 2, before anything is built -----------------------------

@NO_CUDA
@pytest.mark.parametrize("argv", [
    ["build", "specs/tiny.yaml", "--device", "cuda"],
    ["compare", "specs/tiny.yaml", "specs/tiny.yaml", "--device", "cuda"],
    ["generate", "specs/tiny.yaml", "--prompt", "Hi", "--device", "cuda"],
    ["sweep", "sweeps/smoke.yaml", "--device", "cuda", "--db", "{tmp}/s.sqlite"],
])
def test_an_absent_device_is_refused_in_one_line(argv, capsys, tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(GPTModel, "__init__",
                        lambda *a, **k: built.append(1) or pytest.fail("built a model"))
    with pytest.raises(SystemExit) as done:
        main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert done.value.code == 2 and not built
    assert err.count("\n") == 1
    assert "cuda requested but torch was built without CUDA" in err
    assert err.startswith("Error: --device cuda: " if argv[0] != "sweep" else
                          "Error: train.device cuda: ")
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize("argv, message", [
    (["build", "specs/tiny.yaml", "--device", "gpu"],
     "Error: --device: 'gpu' is not a device; use one of auto, cpu, cuda, cuda:N, mps"),
    (["sweep", "sweeps/smoke.yaml", "--device", "gpu", "--dry-run"],
     "Error: --device: 'gpu' is not a device; auto, cpu, cuda, cuda:N or mps"),
])
def test_a_misspelt_device_is_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert capsys.readouterr().err == message + "\n"


def test_the_report_records_the_device_and_dtype(capsys):
    with pytest.raises(SystemExit) as done:
        main(["build", "specs/tiny.yaml", "--only", "params", "--device", "auto", "--dtype",
              "bfloat16", "--format", "json"])
    assert done.value.code == 0
    environment = json.loads(capsys.readouterr().out)["environment"]
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert (environment["device"], environment["dtype"]) == (expected, "bfloat16")


# -- mixed precision --------------------------------------------------------------------------

def test_autocast_and_scaler_follow_the_dtype():
    cpu = torch.device("cpu")
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with devices.autocast(cpu, "float32"):
        assert (a @ b).dtype == torch.float32
    for name, dtype in (("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        with devices.autocast(cpu, name):
            assert torch.is_autocast_enabled("cpu") and (a @ b).dtype == dtype
    assert not devices.grad_scaler(cpu, "float32").is_enabled()
    assert not devices.grad_scaler(cpu, "bfloat16").is_enabled()  # float32's exponent range
    assert devices.grad_scaler(cpu, "float16").is_enabled()


@pytest.fixture(scope="module")
def tiny_corpus():
    from explorer.training.corpus import tokenize

    tokenizer = explorer.get_tokenizer("bytes")
    text = "the quick brown fox jumps over the lazy dog; " * 300
    return tokenize(text, "fox.txt", tokenizer, "bytes")


def _train(dtype, corpus, steps=12, **extra):
    spec = explorer.load_spec("specs/tiny.yaml", overrides=["model.n_layers=2"])
    config = TrainConfig.from_dict({"steps": steps, "batch_size": 4, "seq_len": 32, "lr": 3e-3,
                                    "eval_every": steps, "eval_tokens": 512, "dtype": dtype,
                                    **extra})
    model = explorer.build_model(spec, seed=1)
    return train(model, spec, config, corpus=corpus, seed=1), model


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision_training_keeps_float32_weights_and_follows_float32(dtype, tiny_corpus):
    assert isinstance(tiny_corpus, Corpus)
    full, _ = _train("float32", tiny_corpus)
    mixed, model = _train(dtype, tiny_corpus)
    assert (mixed["dtype"], mixed["optimizer"]) == (dtype, "AdamW (fused)")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the master weights
    losses, reference = mixed["batch_losses"], full["batch_losses"]
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.5  # it learns
    # bfloat16 keeps 8 bits of mantissa: the same run within a few hundredths of a nat.
    for ours, theirs in zip(losses, reference):
        assert ours == pytest.approx(theirs, abs=0.05)
    assert mixed["final_val_loss"] == pytest.approx(full["final_val_loss"], abs=0.05)
    shown = render_train(mixed).splitlines()  # the report says how the steps ran
    assert shown[1].startswith("AdamW (fused) lr 0.003 (constant), weight decay 0.1: 12 steps")
    assert shown[2] == f"on cpu in {dtype}, eager"


def test_bfloat16_generation_on_the_cpu(capsys):
    """The weights cast to bfloat16: the KV-cached tokens of the tiny spec are those of the
    argmax loop over full bfloat16 forwards (and, for this untrained model, of float32)."""
    with pytest.raises(SystemExit) as done:
        main(["generate", "specs/tiny.yaml", "--prompt", "Hello, I am", "--max-new-tokens", "12",
              "--dtype", "bfloat16", "--format", "json"])
    assert done.value.code == 0
    tokens = json.loads(capsys.readouterr().out)["token_ids"]
    model = explorer.build_model(explorer.load_spec("specs/tiny.yaml")).eval().to(torch.bfloat16)
    ids = torch.tensor([list(b"Hello, I am")])
    with torch.no_grad():
        for _ in range(12):
            ids = torch.cat([ids, model(ids)[:, -1].float().argmax(-1, keepdim=True)], dim=1)
    assert tokens == ids[0].tolist()
    fp32 = explorer.generate(explorer.build_model(explorer.load_spec("specs/tiny.yaml")).eval(),
                             ids[:, :11], 12)
    assert tokens == fp32[0].tolist()


def test_build_in_bfloat16_runs_every_default_analysis():
    spec = explorer.load_spec("specs/tiny.yaml", overrides=["model.n_layers=2"])
    report = explorer.analyze(spec, dtype="bfloat16")
    assert report["failures"] == {} and report["warnings"] == []
    full = explorer.analyze(spec, only=["gradflow"])["analyses"]["gradflow"]
    assert report["analyses"]["gradflow"]["loss"] == pytest.approx(full["loss"], abs=0.02)


# -- torch.compile ----------------------------------------------------------------------------

@pytest.mark.slow
def test_compiled_training_gives_the_eager_numbers(tiny_corpus):
    eager, _ = _train("float32", tiny_corpus, steps=3)
    compiled, _ = _train("float32", tiny_corpus, steps=3, compile=True)
    assert (eager["compiled"], compiled["compiled"]) == (False, True)
    assert compiled["batch_losses"] == pytest.approx(eager["batch_losses"], abs=1e-4)
    first = compiled["first_step_seconds"]
    assert render_train(compiled).splitlines()[2] == (
        f"on cpu in float32, compiled with torch.compile (the first step, mostly compiling, "
        f"took {first:.1f} s)")


@pytest.mark.slow
def test_a_compiler_that_fails_is_one_line(tiny_corpus, monkeypatch):
    import torch._inductor.config

    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", ("/nonexistent/g++",))
    torch._dynamo.reset()
    with pytest.raises(explorer.ExplorerError) as error:
        _train("float32", tiny_corpus, steps=2, compile=True)
    message = str(error.value)
    assert message.startswith("train.compile: torch.compile failed: ")
    assert "No working C++ compiler" in message and message.endswith("; set compile: false")
    assert "\n" not in message
    torch._dynamo.reset()


def test_compile_errors_become_one_line():
    from torch._dynamo.exc import TorchDynamoException

    from explorer.training.compilation import compile_errors

    with pytest.raises(explorer.ExplorerError, match=r"^--compile: torch.compile failed: boom; "
                                                     r"run without --compile$"):
        with compile_errors("--compile"):
            raise TorchDynamoException("boom\nmore lines")


# -- the accelerator paths, on the meta device -------------------------------------------------

def test_the_memory_analysis_measures_a_real_step_on_a_device_that_is_not_the_cpu(make_spec):
    """On an accelerator the memory analysis trains one step there; the meta device runs the
    same code (no memory used, no peak to read). The shared model is built again afterwards."""
    spec = make_spec()
    ctx = explorer.AnalysisContext(spec, device="meta")
    analysis = spec.plugin_manager.registry().analysis("memory")
    result = analysis.load()(ctx, **{**analysis.defaults(), "batch_size": 2, "seq_len": 8})
    on = result["activations"]["on_device"]
    fake = ctx.saved_activations(8, 2)["total"]
    assert on["device"] == "meta" and on["peak_bytes"] is None
    assert on["saved_activations_bytes"] > 0
    # The meta device runs attention unfused: it saves the (B, a, T, T) weights too.
    assert on["saved_activations_bytes"] >= fake
    assert on["predicted_peak_bytes"] > on["saved_activations_bytes"]
    assert not ctx.has_model  # trained, then given up: the next model() builds it again
    assert next(ctx.model().parameters()).device.type == "meta"
    text = analysis.load_render()(result)
    assert "on meta (float32), one real training step: activations saved" in text
    assert "peak memory not measured on meta (CUDA only)" in text


def test_the_device_figures_are_printed_beside_the_prediction():
    from explorer.plugins.analyses.memory import _on_device_lines

    lines = _on_device_lines({"device": "cuda:0", "dtype": "bfloat16",
                              "saved_activations_bytes": 3 * 2**20, "peak_bytes": 900 * 2**20,
                              "predicted_peak_bytes": 1000 * 2**20,
                              "peak_source": "torch.cuda.max_memory_allocated"})
    assert lines == ["  on cuda:0 (bfloat16), one real training step: activations saved 3.00 MB",
                     "  peak allocated 900.00 MB (torch.cuda.max_memory_allocated)  predicted "
                     "1,000.00 MB  (measured / predicted = 0.90)"]


def test_ray_asks_for_a_gpu_per_run_on_cuda():
    from explorer.sweep.ray_session import RaySession

    asked = []

    class FakeRay:
        def init(self, **options):
            pass

        def remote(self, fn):
            class Remote:
                def options(self, **options):
                    asked.append(options)
                    return self
            return Remote()

    RaySession(FakeRay(), threads=2, device="cuda")
    RaySession(FakeRay(), threads=2, device="cpu")
    assert [(a["num_cpus"], a["num_gpus"]) for a in asked] == [(2, 1), (2, 0)]


# -- on a real accelerator (skipped here when there is none) ----------------------------------

@CUDA
def test_cuda_training_in_bfloat16_and_the_measured_peak(make_spec, tiny_corpus):
    result, model = _train("bfloat16", tiny_corpus, device="cuda")
    assert result["device"].startswith("cuda") and next(model.parameters()).is_cuda
    assert result["batch_losses"][-1] < result["batch_losses"][0]
    spec = make_spec()
    report = explorer.analyze(spec, only=["memory", "gradflow", "samples"], device="cuda")
    assert report["failures"] == {}
    on = report["analyses"]["memory"]["activations"]["on_device"]
    assert 0.5 < on["peak_bytes"] / on["predicted_peak_bytes"] < 1.5
    cpu = explorer.analyze(spec, only=["samples"])["analyses"]["samples"]
    assert report["analyses"]["samples"]["samples"] == cpu["samples"]


@MPS
def test_mps_training_and_generation(make_spec, tiny_corpus):
    result, _ = _train("float32", tiny_corpus, device="mps")
    assert result["device"] == "mps" and result["batch_losses"][-1] < result["batch_losses"][0]
    report = explorer.analyze(make_spec(), only=["samples", "gradflow"], device="mps")
    assert report["failures"] == {}
