"""The built-in analyses, checked against hand computation and plain torch."""

import pytest
import torch
from torch.nn import functional as F

import explorer
from explorer import Analysis, hookimpl
from explorer.plugins.analyses.gradflow import SAMPLE_TEXT

# make_spec's tiny model: V=256 (bytes), s_max=32, h=16, L=2, f=4h=64, no qkv bias, untied head.
V, S, H, L, F4 = 256, 32, 16, 2, 64
ATTN = 3 * H * H + (H * H + H)  # W_query, W_key, W_value without bias; out_proj with bias
FFN = (H * F4 + F4) + (F4 * H + H)
NORMS = 2 * 2 * H  # two LayerNorms per block, scale + shift
TOTAL = V * H + S * H + L * (ATTN + FFN + NORMS) + 2 * H + V * H


def test_params_by_kind_by_hand(make_spec):
    result = explorer.analyze(make_spec(), only=["params"])["analyses"]["params"]
    assert result["total"] == TOTAL == 15_200
    assert result["trainable"] == TOTAL
    assert result["by_kind"] == {"embedding": V * H, "positional": S * H, "attention": L * ATTN,
                                 "ffn": L * FFN, "norm": L * NORMS + 2 * H, "output_head": V * H}
    assert result["per_block"] == [{"attention": ATTN, "ffn": FFN, "norm": NORMS,
                                    "total": ATTN + FFN + NORMS}] * L
    assert result["with_tied_head"] == TOTAL - V * H


def test_params_tied_counts_shared_tensor_once(make_spec):
    result = explorer.analyze(make_spec(weight_tying="tied"), only=["params"])["analyses"]["params"]
    assert result["total"] == TOTAL - V * H
    assert result["head_tied"] is True


def test_shape_analyses_do_not_build_real_weights(make_spec):
    spec = make_spec()
    ctx = explorer.AnalysisContext(spec)
    assert ctx.shape_model().tok_emb.weight.device.type == "meta"
    assert not ctx.has_model


def test_memory_by_hand(make_spec):
    result = explorer.analyze(make_spec(), only=["memory"])["analyses"]["memory"]
    assert result["parameters"] == TOTAL
    assert result["weights_bytes"] == {"fp32": 4 * TOTAL, "fp16": 2 * TOTAL, "bf16": 2 * TOTAL}
    assert result["training_bytes"]["fp32"] == {
        "weights": 4 * TOTAL, "gradients": 4 * TOTAL, "optimizer": 8 * TOTAL, "total": 16 * TOTAL}
    assert result["training_bytes"]["bf16_mixed"]["total"] == 16 * TOTAL
    assert result["buffers_bytes"] == L * S * S * 4  # the book's float causal masks


def test_gradflow_matches_plain_torch(make_spec):
    spec = make_spec(model={"vocab_size": 50257, "drop_rate": 0.1}, tokenizer="gpt2")
    result = explorer.analyze(spec, only=["gradflow"])["analyses"]["gradflow"]

    # Recompute by hand: same seed for the weights and for the dropout masks.
    model = explorer.build_model(spec)
    batch = torch.tensor([explorer.get_tokenizer("gpt2").encode(SAMPLE_TEXT)])
    torch.manual_seed(spec.seed)
    logits = model(batch[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
    loss.backward()
    assert result["loss"] == pytest.approx(loss.item(), rel=1e-6)
    for i, block in enumerate(model.trf_blocks):
        grads = [p.grad for p in block.parameters() if p.dim() >= 2]
        expected = sum(g.abs().sum().item() for g in grads) / sum(g.numel() for g in grads)
        assert result["per_block"][i]["all"] == pytest.approx(expected, rel=1e-6)
        att = [p.grad for p in block.att.parameters() if p.dim() >= 2]
        assert result["per_block"][i]["attention"] == pytest.approx(
            sum(g.abs().sum().item() for g in att) / sum(g.numel() for g in att), rel=1e-6)
    assert result["per_matrix"]["trf_blocks.0.att.W_query.weight"] == pytest.approx(
        model.trf_blocks[0].att.W_query.weight.grad.abs().mean().item(), rel=1e-6)
    assert result["first_over_last"] == pytest.approx(
        result["per_block"][0]["all"] / result["per_block"][-1]["all"])


def test_samples_greedy_equals_argmax_loop(make_spec):
    spec = make_spec(model={"vocab_size": 50257}, tokenizer="gpt2")
    result = explorer.analyze(spec, only=["samples"])["analyses"]["samples"]
    model = explorer.build_model(spec).eval()
    ids = [15496, 11, 314, 716]  # "Hello, I am"
    with torch.no_grad():
        for _ in range(6):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    sample = result["samples"][0]
    assert sample["prompt"] == "Hello, I am"
    assert sample["token_ids"] == ids
    assert sample["text"] == explorer.get_tokenizer().decode(ids)


def test_samples_options_from_spec(write_spec):
    doc = {"model": {"vocab_size": 50257, "context_length": 32, "emb_dim": 16, "n_heads": 4,
                     "n_layers": 1},
           "analyses": {"samples": {"prompts": ["One", "Two"], "max_new_tokens": 3,
                                    "temperature": 1.0, "top_k": 5}}}
    spec = explorer.load_spec(write_spec(doc))
    first = explorer.analyze(spec, only=["samples"])["analyses"]["samples"]
    again = explorer.analyze(spec, only=["samples"])["analyses"]["samples"]
    assert [len(s["token_ids"]) for s in first["samples"]] == [4, 4]
    assert first == again  # seeded sampling is reproducible
    assert first["decoding"] == "temperature 1.0"


def test_analysis_options_are_validated(write_spec):
    doc = {"tokenizer": "bytes",
           "model": {"vocab_size": 256, "context_length": 32, "emb_dim": 16, "n_heads": 4, "n_layers": 1},
           "analyses": {"samples": {"max_tokens": 3}}}
    with pytest.raises(explorer.SpecError, match="analyses.samples.max_tokens: unknown parameter .* "
                                                 "did you mean 'max_new_tokens'"):
        explorer.load_spec(write_spec(doc))


def test_vocab_smaller_than_the_tokenizer_is_refused_when_the_spec_loads(make_spec):
    # Before, the spec loaded and only the analyses that encode text failed, at run time.
    with pytest.raises(explorer.SpecError) as info:
        make_spec(model={"vocab_size": 97}, tokenizer="gpt2")
    assert str(info.value).endswith(
        "model.vocab_size: 97 is smaller than the gpt2 tokenizer's 50,257 tokens; use "
        "vocab_size >= 50257 or tokenizer: bytes (256)")


def test_unknown_analysis_name(make_spec):
    with pytest.raises(explorer.errors.UnknownNameError, match=r"^--only: unknown analysis 'parms'; "
                                                        r"did you mean 'params'\? registered: "):
        explorer.analyze(make_spec(), only=["parms"])


class Exploding:
    @hookimpl
    def explorer_analyses(self):
        def run(ctx):
            raise RuntimeError("boom")
        return [Analysis(name="exploding", run=run, default=False)]


def test_an_analysis_that_raises_is_reported_by_plugin_name(write_spec):
    plugins = explorer.get_plugin_manager(entry_points=False)
    plugins.register(Exploding(), "exploding-plugin")
    doc = {"tokenizer": "bytes",
           "model": {"vocab_size": 256, "context_length": 32, "emb_dim": 16, "n_heads": 4, "n_layers": 1}}
    spec = explorer.load_spec(write_spec(doc), plugins=plugins)
    report = explorer.analyze(spec, only=["params", "exploding"])
    assert report["analyses"]["params"]["total"] > 0
    assert report["failures"] == {
        "exploding": "analysis 'exploding' (plugin exploding-plugin) raised RuntimeError: boom"}


def test_report_records_provenance(make_spec):
    report = explorer.analyze(make_spec(), only=["params"])
    assert report["components"]["norm"]["plugin"] == "explorer.plugins.norm"
    assert report["components"]["norm"]["distribution"].startswith("explorer ")
    assert report["environment"]["torch"] == torch.__version__
    assert report["spec"]["model"]["emb_dim"] == 16


def test_weights_that_do_not_fit_are_refused_before_allocation(make_spec, monkeypatch):
    from explorer.analysis import runner as analysis

    spec = make_spec()
    monkeypatch.setattr(analysis, "available_memory", lambda: 10_000)  # bytes
    needed = 4 * TOTAL + L * S * S * 4  # fp32 weights + the causal-mask buffers
    with pytest.raises(explorer.ResourceError) as info:
        explorer.analyze(spec, only=["params", "samples"])
    shape_only = sorted(a.name for a in spec.plugin_manager.registry().analyses.values()
                        if not a.needs_weights)
    assert {"params", "memory"} <= set(shape_only) and "samples" not in shape_only
    assert str(info.value) == (
        f"{spec.source}: the weights need {needed / 2**30:.1f} GiB but only 0.0 GiB is available; "
        f"analyses that need only shapes can still run: --only {','.join(shape_only)}")
    # Shape-only analyses still run, on the meta device.
    assert explorer.analyze(spec, only=["params"])["analyses"]["params"]["total"] == TOTAL


class RefusesAtRun:
    @hookimpl
    def explorer_analyses(self):
        def run(ctx):
            raise explorer.ParamError("n", "too late to refuse", "refuse in check")
        return [Analysis(name="late", run=run, default=False)]


def test_a_param_error_from_a_run_is_reported_by_plugin_name(write_spec):
    """Not explorer's own one-line error: a ParamError belongs in the analysis's check."""
    plugins = explorer.get_plugin_manager(entry_points=False)
    plugins.register(RefusesAtRun(), "late-plugin")
    doc = {"tokenizer": "bytes",
           "model": {"vocab_size": 256, "context_length": 32, "emb_dim": 16, "n_heads": 4, "n_layers": 1}}
    report = explorer.analyze(explorer.load_spec(write_spec(doc), plugins=plugins), only=["late"])
    assert report["failures"] == {"late": "analysis 'late' (plugin late-plugin) raised "
                                          "ParamError: too late to refuse; refuse in check"}
