"""The coordcheck analysis (plugins/analyses/coordcheck.py): under μP the activations after a few
AdamW steps are flat in width, under the standard parametrization they grow; the RMS it reports
is the one computed by hand; its chart and option errors."""

import math

import pytest
import torch

import explorer
from explorer.analysis.plots import draw
from explorer.plugins.analyses.coordcheck import ratios
from tests.helpers import TINY_MODEL, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

# Two blocks, four heads, widths 64 and 512 (three doublings), three AdamW steps at lr 1e-2 on
# 4 x 32 bytes: about a second a parametrization.
CHECK = {"widths": [64, 512], "steps": 3, "lr": 1e-2, "batch_size": 4, "seq_len": 32}
# The bounds, widest over narrowest RMS of the last block's output after the steps. Something
# that scales as width^a changes by 8^a over three doublings. Under the standard
# parametrization an Adam step moves each coordinate of a hidden matrix's output by ~ lr * fan_in
# (the update is aligned with the input): a = 1, a ratio near 8 or more once the updates
# dominate the initial activations (seeds 1-4 measure 10-18). μP makes every update Θ(1):
# a = 0, up to finite-width noise (seeds 1-4 measure 0.92-1.06, the logits 0.97-1.07). FLAT
# allows |a| < 0.14 (a ratio within [0.75, 1.33]); GROWS asks for a > 2/3 (a ratio > 4):
# neither bound is near what the other parametrization gives.
FLAT = (0.75, 1.33)
GROWS = 4.0


def check_spec(write_spec, parametrization, seed=1, **options):
    doc = {"name": parametrization, "seed": seed, "tokenizer": "bytes",
           "model": {**TINY_MODEL, "context_length": 64, "emb_dim": 64,
                     "parametrization": parametrization, "base_width": 64},
           "analyses": {"coordcheck": {**CHECK, **options}}}
    return explorer.load_spec(write_spec(doc))


def coordcheck(spec):
    report = explorer.analyze(spec, only=["coordcheck"])
    assert report["failures"] == {}
    return report["analyses"]["coordcheck"]


@pytest.mark.parametrize("seed", [1, 2])
def test_mup_is_flat_in_width_and_standard_grows(write_spec, seed):
    mup = coordcheck(check_spec(write_spec, "mup", seed))
    standard = coordcheck(check_spec(write_spec, "standard", seed))
    assert mup["layers"] == ["embedding", "block 0", "block 1", "logits"]
    assert FLAT[0] < ratios(mup)["block 1"] < FLAT[1]
    assert FLAT[0] < ratios(mup)["logits"] < FLAT[1]
    assert ratios(standard)["block 1"] > GROWS
    # At initialisation at width 512 (m = 8) the embeddings are the same draws; μP's logits are
    # the head's sqrt(m)-times larger weights times 1 / m, so 1 / sqrt(8) of the standard ones
    # (the transient at initialisation Yang et al. describe) up to the blocks' small differences
    # (biases times sqrt(m), 1/d attention).
    assert mup["rms"][1][0][0] == standard["rms"][1][0][0]
    assert mup["rms"][1][0][3] == pytest.approx(standard["rms"][1][0][3] / math.sqrt(8),
                                                rel=0.01)


def test_the_rms_is_the_one_computed_by_hand(write_spec):
    """Step 0 at width 64 (the base: the spec's own model): the RMS of the logits and of the
    embeddings the first block sees, for the corpus's first 2 x 8 bytes."""
    from explorer.training.corpus import load_corpus

    spec = check_spec(write_spec, "mup", widths=[64, 128], steps=1, batch_size=2, seq_len=8)
    result = coordcheck(spec)
    ids = torch.tensor(list(load_corpus()[0][:18].encode())).view(2, 9)[:, :-1]
    model = explorer.build_model(spec).eval()
    with torch.no_grad():
        logits = model(ids)
        embedded = model.tok_emb(ids) + model.pos_emb.embed(torch.zeros(2, 8, 64),
                                                           torch.arange(8))
    first = result["rms"][0][0]
    assert first[-1] == pytest.approx(logits.pow(2).mean().sqrt().item(), rel=1e-6)
    assert first[0] == pytest.approx(embedded.pow(2).mean().sqrt().item(), rel=1e-6)
    assert len(result["rms"]) == 2 and len(result["rms"][0]) == 2  # widths x (init, 1 step)


def test_the_chart_and_text_show_both_steps(write_spec):
    result = coordcheck(check_spec(write_spec, "mup", widths=[64, 128], steps=1, seq_len=8))
    chart = next(c for c in explorer.get_plugin_manager().registry().analysis(
        "coordcheck").charts)
    fig = draw(chart, [("mup", result), ("standard", result)])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["mup: at init", "mup: after 1 steps", "standard: at init",
                      "standard: after 1 steps"]
    text = explorer.get_plugin_manager().registry().analysis("coordcheck").load_render()(result)
    assert "μP from base width 64" in text and "after 1 steps:" in text


@pytest.mark.parametrize("widths, message", [
    ([64], "expected two or more increasing widths, got [64]; e.g. [64, 128, 256, 512]"),
    ([128, 64], "expected two or more increasing widths, got [128, 64]"),
    ([64, 66], "66 is not a multiple of n_heads 4; multiples of 4"),
])
def test_bad_widths_are_one_line(capsys, write_spec, widths, message):
    doc = {"name": "t", "tokenizer": "bytes", "model": TINY_MODEL,
           "analyses": {"coordcheck": {"widths": widths}}}
    path = write_spec(doc)
    code, out, err = run_cli(capsys, "build", path, "--only", "coordcheck")
    assert code == 2 and out == ""
    assert err.startswith(f"Error: {path}: analyses.coordcheck.widths: {message}")
    assert err.count("\n") == 1
