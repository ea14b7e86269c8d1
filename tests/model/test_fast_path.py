"""impl auto (the default) computes the book's function with torch's fused kernels, in training
too; impl book is the book's arithmetic bit for bit (tests/model/test_book.py). Fused AdamW and AdamW
taken inside the backward give the default AdamW's numbers."""

import copy
import math
import statistics

import pytest
import torch
from torch.nn import functional as F

import explorer
from explorer.training.optimizers import adamw, adamw_in_backward, optimizer_name

pytestmark = pytest.mark.usefixtures("one_thread")

IMPLS = {"book": {"norm": {"name": "layernorm", "impl": "book"},
                  "activation": {"name": "gelu_tanh", "impl": "book"}},
         "auto": {}}  # layernorm and gelu_tanh default to auto


def pair(make_spec, drop_rate, attention="mha", **extra):
    """The same seeded tiny GPT with impl auto (the defaults) and impl book."""
    models = {}
    for impl, layers in IMPLS.items():
        spec = make_spec(model={"drop_rate": drop_rate, "context_length": 32}, **layers,
                         attention={"name": attention, "impl": impl, **extra})
        models[impl] = explorer.build_model(spec, seed=3)
    return models["auto"], models["book"]


def batch(b=3, t=24, seed=0):
    ids = torch.randint(0, 256, (b, t + 1), generator=torch.Generator().manual_seed(seed))
    return ids[:, :-1], ids[:, 1:]


@pytest.mark.parametrize("attention, extra", [("mha", {}), ("gqa", {"n_kv_heads": 2}),
                                              ("mha", {"window": 5})])
def test_auto_and_book_give_the_same_eval_logits(make_spec, attention, extra):
    auto, book = pair(make_spec, 0.1, attention, **extra)
    inputs, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(auto.eval()(inputs), book.eval()(inputs), atol=1e-5, rtol=0)


def test_auto_and_book_train_the_same_function_without_dropout(make_spec):
    auto, book = pair(make_spec, 0.0)
    inputs, targets = batch()
    losses = []
    for model in (auto.train(), book.train()):
        logits = model(inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        losses.append((logits, loss))
    torch.testing.assert_close(losses[0][0], losses[1][0], atol=1e-5, rtol=0)
    for (name, a), b in zip(auto.named_parameters(), book.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-4, msg=name)


def test_with_dropout_the_training_loss_has_the_same_distribution(make_spec):
    """Dropout masks differ (SDPA's own dropout against the book's nn.Dropout on the weights),
    so compare distributions: over 40 seeds, the mean training loss on one fixed batch agrees
    within 3 standard errors of the difference, and so does its spread (the standard
    deviations within 30%: each is known to about 11% from 40 samples)."""
    auto, book = pair(make_spec, 0.3)
    inputs, targets = batch()
    with torch.no_grad():
        samples = {}
        for name, model in (("auto", auto.train()), ("book", book.train())):
            samples[name] = []
            for seed in range(40):
                torch.manual_seed(seed)
                logits = model(inputs)
                samples[name].append(F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item())
    mean = {k: statistics.fmean(v) for k, v in samples.items()}
    sem = {k: statistics.stdev(v) / math.sqrt(len(v)) for k, v in samples.items()}
    assert abs(mean["auto"] - mean["book"]) < 3 * math.hypot(sem["auto"], sem["book"])
    spread = {k: statistics.stdev(v) for k, v in samples.items()}
    assert spread["book"] > 0.01  # dropout is active: the masks change with the seed
    assert 0.7 < spread["auto"] / spread["book"] < 1.3, spread


def test_fused_adamw_matches_the_default_implementation(make_spec):
    model = explorer.build_model(make_spec(), seed=1).train()
    other = copy.deepcopy(model)
    fused = adamw(model.parameters(), 1e-2, 0.1)
    default = torch.optim.AdamW(other.parameters(), lr=1e-2, weight_decay=0.1)
    assert optimizer_name(fused) == "AdamW (fused)"
    assert optimizer_name(default) == "AdamW (foreach)"
    inputs, targets = batch()
    for _ in range(5):
        for m, opt in ((model, fused), (other, default)):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(inputs).flatten(0, 1), targets.flatten()).backward()
            opt.step()
    for a, b in zip(model.parameters(), other.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("tying", ["none", "tied"])
def test_adamw_in_backward_is_adamw_after_backward_and_frees_the_gradients(make_spec, tying):
    model = explorer.build_model(make_spec(weight_tying=tying), seed=1).train()
    reference = copy.deepcopy(model)
    optimizer = adamw(reference.parameters(), 1e-2, 0.1)
    inputs, targets = batch()
    with adamw_in_backward(model, 1e-2, 0.1):
        for _ in range(3):
            F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten()).backward()
            assert all(p.grad is None for p in model.parameters())  # freed as they stepped
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(reference(inputs).flatten(0, 1), targets.flatten()).backward()
            optimizer.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    # Outside the block a backward keeps its gradients and steps nothing.
    before = [p.detach().clone() for p in model.parameters()]
    F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten()).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))


def test_gradflow_trains_the_shared_model_in_place_and_the_context_builds_it_again(make_spec):
    spec = make_spec(model={"drop_rate": 0.1})
    ctx = explorer.AnalysisContext(spec)
    first = ctx.model()
    run = spec.plugin_manager.registry().analysis("gradflow").load()
    result = run(ctx, **spec.plugin_manager.registry().analysis("gradflow").defaults())
    assert result["after_steps"]["loss"] < result["loss"]
    again = ctx.model()
    assert again is not first  # given up to the steps, then built again from the seed
    fresh = explorer.build_model(spec)
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), fresh.parameters()))


def test_a_model_handed_to_the_context_is_copied_not_changed(make_spec):
    spec = make_spec()
    model = explorer.build_model(spec)
    before = [p.detach().clone() for p in model.parameters()]
    report = explorer.analyze(spec, only=["gradflow"], model=model)
    assert report["failures"] == {} and "after_steps" in report["analyses"]["gradflow"]
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))


def test_train_trains_the_shared_model_in_place_and_the_context_builds_it_again(make_spec):
    spec = make_spec()
    ctx = explorer.AnalysisContext(spec)
    first = ctx.model()
    analysis = spec.plugin_manager.registry().analysis("train")
    result = analysis.load()(ctx, **{**analysis.defaults(), "steps": 3, "eval_every": 3,
                                     "batch_size": 2, "seq_len": 16, "eval_tokens": 64})
    assert result["steps"] == 3
    trained = [p.detach().clone() for p in first.parameters()]
    fresh = explorer.build_model(spec)
    assert not all(torch.equal(a, b) for a, b in zip(trained, fresh.parameters()))
    again = ctx.model()
    assert again is not first  # given up to the run, then built again from the seed
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), fresh.parameters()))


def test_train_on_a_model_handed_to_the_context_leaves_it_unchanged(make_spec):
    spec = make_spec()
    model = explorer.build_model(spec)
    before = [p.detach().clone() for p in model.parameters()]
    report = explorer.analyze(spec, only=["train"], model=model)
    assert report["failures"] == {}
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))
