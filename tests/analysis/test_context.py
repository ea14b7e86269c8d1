"""What AnalysisContext shares between analyses (models built once, activations measured once,
train/eval mode restored), and build_model leaving the caller's random stream alone."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor

import explorer
import explorer.analysis.runner
import explorer.model.gpt
from explorer.model.gpt import rng_devices

# make_spec's tiny model (tests/conftest.py): T = context 32, vocab 97.
T, V = 32, 256  # TINY_MODEL, bytes tokenizer


def test_meta_model_is_built_once_and_stays_on_meta(make_spec):
    ctx = explorer.AnalysisContext(make_spec())
    meta = ctx.meta_model()
    assert meta is ctx.meta_model() is ctx.shape_model()
    assert meta.tok_emb.weight.device.type == "meta"
    real = ctx.model()
    assert ctx.shape_model() is real and real.tok_emb.weight.device.type == "cpu"
    assert ctx.meta_model() is meta


def test_fake_model_lives_inside_its_mode_and_the_mode_is_left(make_spec):
    ctx = explorer.AnalysisContext(make_spec())
    with ctx.fake_model() as model:
        assert isinstance(model.tok_emb.weight, FakeTensor)
        assert isinstance(torch.zeros(2), FakeTensor)  # inputs made inside are fake too
        logits = model(torch.zeros(1, 5, dtype=torch.long))
        assert logits.shape == (1, 5, V)
    assert not isinstance(torch.zeros(2), FakeTensor)
    with pytest.raises(RuntimeError, match="inside"):
        with ctx.fake_model() as again:
            assert again is model  # built once
            raise RuntimeError("inside")
    assert not isinstance(torch.zeros(2), FakeTensor)  # left on an exception too
    with ctx.fake_model("bf16") as half:  # the same model, cast: free on fake tensors
        assert half is model and half.tok_emb.weight.dtype == torch.bfloat16
        assert half.out_head(torch.zeros(1, 16, dtype=torch.bfloat16)).dtype == torch.bfloat16
    with ctx.fake_model() as model:
        assert {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.parametrize("start", [True, False])
def test_mode_sets_and_restores_training_even_on_error(make_spec, start):
    ctx = explorer.AnalysisContext(make_spec())
    model = ctx.model().train(start)
    with ctx.mode(model, train=not start) as inside:
        assert inside is model and model.training is (not start)
        assert all(m.training is (not start) for m in model.modules())
    assert model.training is start
    with pytest.raises(ValueError):
        with ctx.mode(model, train=not start):
            raise ValueError
    assert all(m.training is start for m in model.modules())


def test_analyses_share_one_model_of_each_kind(make_spec, monkeypatch):
    """flops and memory used to build their own meta and fake models once the real one
    existed; now every analysis shares the context's: one real, one meta (also used to check
    the weights fit), one fake (measured at fp32 and cast to bf16)."""
    built = []
    real_build = explorer.model.gpt.build_model

    def counting(spec, seed=None, device=None, **kwargs):
        model = real_build(spec, seed, device, **kwargs)
        fake = isinstance(next(model.parameters()), FakeTensor)
        built.append("fake" if fake else str(device or "cpu"))
        return model

    monkeypatch.setattr(explorer.analysis.runner, "build_model", counting)
    monkeypatch.setattr(explorer.model.gpt, "build_model", counting)
    monkeypatch.setattr("explorer.weights.loading.build_model", counting)  # the real one's
    spec = make_spec(model={"vocab_size": 50257})
    report = explorer.analyze(spec, only=["params", "memory", "flops", "summary"])
    assert report["failures"] == {}
    assert sorted(built) == ["fake", "meta"]  # shape analyses build no real model
    built.clear()
    report = explorer.analyze(spec, only=["samples", "params", "memory", "flops", "summary"])
    assert report["failures"] == {}
    assert sorted(built) == ["cpu", "fake", "meta"]


def test_activation_bytes_are_affine_in_the_batch(make_spec):
    """Predictions scale the batch-1 measurement by the batch: exact up to the few tensors
    that do not grow with it (the causal mask, the positions, 0-dim constants), so an upper
    bound that is off by those alone."""
    ctx = explorer.AnalysisContext(make_spec(model={"drop_rate": 0.1}))
    m1, m2, m3, m8 = (ctx.saved_activations(T, b)["total"] for b in (1, 2, 3, 8))
    per_sequence, constant = m2 - m1, 2 * m1 - m2
    assert m3 - m2 == per_sequence and m8 == constant + 8 * per_sequence
    assert 0 < constant < 0.05 * m1  # so batch x m1 is an upper bound within 5%
    assert 8 * m1 >= m8
    assert ctx.saved_activations(T, 8) is ctx.saved_activations(T, 8)  # measured once


def test_build_leaves_the_callers_random_stream_alone(make_spec):
    spec = make_spec()
    torch.manual_seed(42)
    expected = torch.rand(4)
    torch.manual_seed(42)
    model = explorer.build_model(spec, seed=123)
    assert torch.initial_seed() == 42
    assert torch.equal(torch.rand(4), expected)
    # The same weights as a build that draws from the global stream, as the book's does.
    torch.manual_seed(0)
    from_global = explorer.build_model(spec, seed=123, fork_rng=False)
    assert torch.initial_seed() == 123  # the unforked build seeded the global stream
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 from_global.state_dict().values()))


def test_rng_is_forked_for_the_device_built_on():
    assert rng_devices(None) == ("cuda", [])  # the CPU: fork_rng always forks its generator
    assert rng_devices(torch.device("meta")) == ("cuda", [])
    assert rng_devices(torch.device("cuda:1")) == ("cuda", [1])
    assert rng_devices(torch.device("mps")) == ("mps", [0])


def test_analyses_leave_the_callers_random_stream_alone(make_spec):
    """gradflow and train seed the global stream for their dropout masks, inside a fork."""
    spec = make_spec(model={"vocab_size": 256, "drop_rate": 0.1})
    spec = explorer.load_spec(spec.source, overrides=["tokenizer=bytes", "analyses.train.steps=1",
                                                      "analyses.train.eval_tokens=64",
                                                      "analyses.gradflow.steps=1"])
    torch.manual_seed(42)
    expected = torch.rand(4)
    torch.manual_seed(42)
    report = explorer.analyze(spec, only=["gradflow", "train"])
    assert report["failures"] == {}
    assert torch.equal(torch.rand(4), expected)
