"""The deeper analyses (memory's activations and KV cache, flops, gradflow after steps, summary,
train), checked against hand derivations, formulas.md and plain torch."""

import copy
import math
from collections import Counter

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

import explorer
from explorer.plugins.analyses.gradflow import SAMPLE_TEXT
from explorer.training.corpus import load_corpus

# A spec whose sizes are all different, so no two terms of the hand count can be confused:
# batch B=2 of T=6 tokens, context 8, width h=12, a=3 heads, vocab V=256 (the byte tokenizer's:
# a vocabulary smaller than the tokenizer's is refused), L=2 blocks, f=4h.
B, T, C, H, A, V, L = 2, 6, 8, 12, 3, 256, 2
FF = 4 * H
N = B * T  # token positions in the batch


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: per-op threading overhead would dominate (and 2 threads on 2
    busy cores crawl), so run each test on one thread and restore the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _spec(write_spec, drop_rate=0.0, analyses=None, tokenizer="bytes", impl="auto", **model):
    doc = {"name": "hand", "seed": 123, "tokenizer": tokenizer,
           "model": {"vocab_size": V, "context_length": C, "emb_dim": H, "n_heads": A,
                     "n_layers": L, "drop_rate": drop_rate, **model},
           # The book's block, which block_bytes counts: its LayerNorm and GELU written out.
           "components": {"norm": {"name": "layernorm", "impl": "book"},
                          "activation": {"name": "gelu_tanh", "impl": "book"},
                          "attention": {"name": "mha", "impl": impl}},
           "analyses": analyses or {}}
    return explorer.load_spec(write_spec(doc))


def _memory(spec, **options):
    spec.analyses["memory"] = {**spec.analyses.get("memory", {}), **options}
    report = explorer.analyze(spec, only=["memory"])
    assert report["failures"] == {}
    return report["analyses"]["memory"]


# -- memory: activations autograd saves, derived by hand ------------------------------------

def block_bytes(p, impl="manual"):
    """What one book block (pre-norm, LayerNorm, mha, GELU-tanh MLP) saves, dropout 0.

    With p bytes per value:
    - norm1 (the book's LayerNorm): var saves x; sqrt saves std (B,T,1), which the division
      saves again (one storage); the division saves x - mean; scale * norm_x saves norm_x.
      3 (B,T,h) + 1 (B,T,1).                                               -> 3nh + n values
    - attention: the three projections save the same input (norm1's output, one storage);
      Q and K^T are copied to (B*a, T, d) for the batched matmul; masked_fill_ saves the
      (T, T) bool mask (1 byte each); softmax saves its output, which weights @ V reuses
      (one storage); V is copied to (B*a, T, d); out_proj saves the merged heads.
                                                              -> 5nh + aBT^2 values + T^2 bytes
      With torch's fused kernel instead (impl sdpa, or book without dropout), the CPU's
      flash attention saves q, k and v (views of the three projections' outputs), its output
      and the log-sum-exp (B,a,T), which is fp32 at any dtype; the output is laid out (B,T,a,d)
      already, so out_proj's input is the same storage. No mask (is_causal), no s x s tensor.
                                                                 -> 5nh values + 4aBT bytes
    - norm2: as norm1.                                                     -> 3nh + n values
    - MLP: the first Linear saves its input (nh); the written-out GELU saves x for pow, the
      fp32 constant sqrt(2/pi) (4 bytes: a 0-dim tensor made in forward, fp32 at any dtype),
      tanh's output, 0.5*x and 1 + tanh; the second Linear saves the GELU output.
                                                                 -> nh + 5nf values + 4 bytes
    """
    if impl == "sdpa":
        return p * (12 * N * H + 2 * N + 5 * N * FF) + 4 * A * B * T + 4
    return p * (12 * N * H + 2 * N + A * B * T * T + 5 * N * FF) + T * T + 4


def outside_blocks_bytes(p):
    embedding = N * 8 + T * 8  # the int64 token ids (B, T) and positions (T,) the lookups save
    head = p * (3 * N * H + N) + p * N * H  # final LayerNorm as above + the head's input
    # cross_entropy: log_softmax's output (n, V), reused by nll_loss; the int64 targets;
    # nll_loss's total_weight (a 0-dim tensor of the logits' dtype).
    loss = p * N * V + 8 * N + p
    return embedding, head, loss


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("dtype, p", [("fp32", 4), ("bf16", 2)])
def test_saved_activations_equal_the_hand_count(write_spec, dtype, p, impl):
    result = _memory(_spec(write_spec, impl=impl), batch_size=B, seq_len=T)
    measured = result["activations"]["measured"][dtype]
    embedding, head, loss = outside_blocks_bytes(p)
    assert measured["per_block"] == [block_bytes(p, impl)] * L
    assert (measured["embedding"], measured["head"], measured["loss"]) == (embedding, head, loss)
    assert measured["total"] == L * block_bytes(p, impl) + embedding + head + loss
    assert result["activations"]["measured_bytes"][dtype] == measured["total"]
    # Every weight matrix, LayerNorm scale and the head weight is saved by autograd too, but
    # those are parameters: 2 blocks x (q, k, v, out, ff1, ff2, 2 scales) + final scale + head.
    assert measured["weight_storages_saved"] == L * 8 + 2


@pytest.mark.parametrize("dtype, p", [("fp32", 4), ("bf16", 2)])
def test_auto_saves_what_the_fused_kernels_save(write_spec, dtype, p):
    """impl auto everywhere (the default): training runs torch's kernels. F.layer_norm saves its
    input, mean and 1/std ((B,T,1) each, in the input's dtype) -> nh + 2n values per norm;
    attention as impl sdpa (block_bytes); the first Linear saves norm2's output, F.gelu only
    its input, the second Linear the GELU output -> nh + 2nf values: per block
    p (8nh + 4n + 2nf) + 4aBT, against the book's 12nh + 2n + aBT^2 + 5nf values."""
    doc = {"name": "auto", "seed": 123, "tokenizer": "bytes",
           "model": {"vocab_size": V, "context_length": C, "emb_dim": H, "n_heads": A,
                     "n_layers": L, "drop_rate": 0.0}}
    measured = _memory(explorer.load_spec(write_spec(doc)), batch_size=B,
                       seq_len=T)["activations"]["measured"][dtype]
    assert measured["per_block"] == [p * (8 * N * H + 4 * N + 2 * N * FF) + 4 * A * B * T] * L
    assert measured["head"] == p * (N * H + 2 * N) + p * N * H  # final norm + the head's input
    assert measured["per_block"][0] < block_bytes(p, "sdpa")


@pytest.mark.parametrize("impl, drop_rate", [("manual", 0.1), ("auto", 0.1), ("sdpa", 0.0)])
def test_fake_tensors_measure_what_the_real_model_saves(write_spec, impl, drop_rate):
    spec = _spec(write_spec, drop_rate=drop_rate, impl=impl)
    fake = _memory(spec, batch_size=B, seq_len=T)["activations"]["measured"]
    cpu = _memory(spec, batch_size=B, seq_len=T, device="cpu")["activations"]["measured"]
    assert fake == cpu


def test_meta_device_runs_fused_attention_unfused(write_spec):
    spec = _spec(write_spec, impl="sdpa")
    meta = _memory(spec, batch_size=B, seq_len=T, device="meta")["activations"]["measured"]["fp32"]
    # On meta, scaled_dot_product_attention decomposes into matmuls and a softmax, which save
    # the (B,a,T,T) weights: more than the CPU's fused kernel saves.
    assert meta["per_block"][0] > block_bytes(4, "sdpa")


def test_dropout_adds_its_masks(write_spec):
    plain = _memory(_spec(write_spec, impl="manual"), batch_size=B,
                    seq_len=T)["activations"]["measured"]["fp32"]
    drop = _memory(_spec(write_spec, drop_rate=0.1, impl="manual"), batch_size=B,
                   seq_len=T)["activations"]["measured"]["fp32"]
    # PyTorch's CPU dropout is input * mask with the mask in the input's dtype (4 bytes here;
    # CUDA's fused dropout keeps 1-byte masks, as Korthikanti et al. assume).
    # Per block: attention dropout's mask (B,a,T,T) and its output, which weights @ V now
    # saves besides softmax's output; the two residual dropouts' masks (B,T,h).
    assert drop["per_block"][0] - plain["per_block"][0] == 4 * (2 * A * B * T * T + 2 * N * H)
    assert drop["embedding"] - plain["embedding"] == 4 * N * H  # the embedding dropout's mask
    assert (drop["head"], drop["loss"]) == (plain["head"], plain["loss"])


def test_korthikanti_estimate_and_kv_cache_of_gpt2_small():
    spec = explorer.load_spec("specs/gpt2_small.yaml")
    result = _memory(spec)  # batch 1 at the full context, on the meta device
    act, kv = result["activations"], result["kv_cache"]
    s, b, h, a = 1024, 1, 768, 12
    assert act["seq_len"] == s
    assert act["korthikanti_per_layer_16bit"] == s * b * h * (34 + 5 * a * s // h) == 89_653_248
    # formulas.md: gpt2-small at fp16 keeps 36,864 bytes per token, 37.7 MB at 1,024 tokens.
    assert kv["bytes_per_token"] == {"bf16": 36_864, "fp32": 73_728}
    assert kv["bytes_full_context"]["bf16"] == 37_748_736
    assert round(kv["bytes_full_context"]["bf16"] / 1e6, 1) == 37.7
    n = 163_009_536
    assert result["inference_bytes"] == {"fp32": 4 * n + 2 * 37_748_736, "bf16": 2 * n + 37_748_736}
    assert result["training_total_bytes"]["fp32"] == 16 * n + act["measured_bytes"]["fp32"]
    # The book's GPT-2 saves more than the paper's list: its LayerNorm and GELU are written out
    # op by op, and CPU dropout masks are fp32. Each block, at fp32, with dropout 0.1 (which
    # makes impl book, the spec's, take the manual path in training):
    f = 4 * h
    per_block = (4 * (12 * s * h + 2 * s + a * s * s + 5 * s * f)  # as block_bytes, b = 1
                 + 4 * (2 * a * s * s + 2 * s * h)  # the dropouts (test_dropout_adds_its_masks)
                 + s * s + 4)
    assert act["measured"]["fp32"]["per_block"] == [per_block] * 12


def test_kv_cache_with_grouped_queries_and_a_window(write_spec):
    doc = {"name": "gqa", "tokenizer": "bytes",
           "model": {"vocab_size": V, "context_length": 64, "emb_dim": H, "n_heads": 4,
                     "n_layers": L},
           "components": {"attention": {"name": "gqa", "n_kv_heads": 2, "window": 16}}}
    spec = explorer.load_spec(write_spec(doc))
    kv = _memory(spec, batch_size=3, seq_len=4)["kv_cache"]
    d = H // 4
    assert (kv["n_kv_heads"], kv["head_dim"], kv["tokens"]) == (2, d, 16)  # the window caps s
    assert kv["bytes_per_token"]["fp32"] == 2 * L * 2 * d * 4
    assert kv["bytes_full_context"]["bf16"] == 2 * L * 3 * 16 * 2 * d * 2


# -- flops: closed form == FlopCounterMode ---------------------------------------------------

def _hand_forward_flops(n_matmul, s, h=H, vocab=V, layers=L):
    """formulas.md: 2*N_matmul + 4*L*s*h (full scores) + 2*h*V per token, times s tokens."""
    return s * (2 * n_matmul + 4 * layers * s * h + 2 * h * vocab)


def _flops_spec(write_spec, components):
    doc = {"name": "f", "tokenizer": "bytes",
           "model": {"vocab_size": V, "context_length": C, "emb_dim": H, "n_heads": A,
                     "n_layers": L},
           "components": components, "analyses": {"flops": {"seq_len": T}}}
    return explorer.load_spec(write_spec(doc))


def _count_real(spec):
    model = explorer.build_model(spec)
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, T, dtype=torch.long))
    return counter.get_total_flops()


@pytest.mark.parametrize("components, n_matmul_per_block", [
    ({}, 4 * H * H + 2 * H * FF),  # q, k, v, out + the MLP's two matrices
    ({"weight_tying": "tied"}, 4 * H * H + 2 * H * FF),
    ({"attention": {"name": "gqa", "n_kv_heads": 1}}, 2 * H * H + 2 * H * (H // A) + 2 * H * FF),
])
def test_flops_equal_flop_counter(write_spec, components, n_matmul_per_block):
    attention = {"name": "mha", **components.get("attention", {}), "impl": "manual"}
    spec = _flops_spec(write_spec, {**components, "attention": attention})
    result = explorer.analyze(spec, only=["flops"])["analyses"]["flops"]
    n_matmul = L * n_matmul_per_block
    assert result["matmul_parameters"] == n_matmul
    expected = _hand_forward_flops(n_matmul, T)
    assert T * result["forward_per_token"]["total"] == expected
    assert result["forward_per_token"]["attention_causal"] * 2 == 4 * L * T * H
    assert result["measured"]["forward"] == expected  # exact: only matmuls are counted
    assert result["measured"]["forward_and_backward"] == 3 * expected

    # The same count on the real model, outside the analysis (not on the meta device).
    assert _count_real(spec) == expected


def test_flop_counter_misses_fused_attention_on_cpu(write_spec):
    """torch 2.13's FlopCounterMode has no formula for the CPU's fused attention kernel
    (_scaled_dot_product_flash_attention_for_cpu): on a real CPU model it drops exactly the
    4*L*s*h attention term. The analysis counts on the meta device, where the kernel runs as
    matmuls, and so keeps it."""
    spec = _flops_spec(write_spec, {"attention": {"name": "mha", "impl": "sdpa"}})
    result = explorer.analyze(spec, only=["flops"])["analyses"]["flops"]
    expected = _hand_forward_flops(L * (4 * H * H + 2 * H * FF), T)
    assert result["measured"]["forward"] == expected
    assert _count_real(spec) == expected - T * 4 * L * T * H


def test_flops_of_gpt2_small_follow_formulas_md():
    result = explorer.analyze(explorer.load_spec("specs/gpt2_small.yaml"),
                              only=["flops"])["analyses"]["flops"]
    h, layers, s, vocab = 768, 12, 1024, 50257
    n_matmul = layers * 12 * h * h  # 84,934,656
    per_token = 2 * n_matmul + 4 * layers * s * h + 2 * h * vocab
    assert result["forward_per_token"]["total"] == per_token == 284_812_800
    assert result["measured"]["forward"] == s * per_token
    # Kaplan's N: without the token and position embeddings and the (untied) head.
    n_nonembedding = 163_009_536 - 2 * vocab * h - s * h
    assert result["training_per_token"]["6N_nonembedding"] == 6 * n_nonembedding


# -- gradflow after a few optimizer steps ------------------------------------------------------

def _gradflow_spec(write_spec, residual="pre_norm", steps=3):
    doc = {"name": "g", "seed": 123, "tokenizer": "bytes",
           "model": {"vocab_size": 256, "context_length": 128, "emb_dim": 32, "n_heads": 4,
                     "n_layers": 6, "drop_rate": 0.0},
           "components": {"residual": residual},
           "analyses": {"gradflow": {"steps": steps}}}
    return explorer.load_spec(write_spec(doc))


def _mean_abs(params):
    grads = [p.grad for p in params if p.dim() >= 2]
    return sum(g.abs().sum().item() for g in grads) / sum(g.numel() for g in grads)


def test_gradflow_after_steps_matches_plain_torch(write_spec):
    spec = _gradflow_spec(write_spec)
    ctx = explorer.AnalysisContext(spec)
    run = spec.plugin_manager.registry().analysis("gradflow").load()
    result = run(ctx, **spec.analyses["gradflow"])
    # The shared model keeps its initial weights for the other analyses.
    fresh = explorer.build_model(spec)
    assert all(torch.equal(a, b) for a, b in zip(ctx.model().parameters(), fresh.parameters()))

    ids = torch.tensor([list(SAMPLE_TEXT.encode())])
    inputs, targets = ids[:, :-1], ids[:, 1:]
    model = copy.deepcopy(fresh).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        loss.backward()
        losses.append(loss.item())
        if len(losses) < 4:
            opt.step()
    after = result["after_steps"]
    assert after["steps"] == 3 and after["lr"] == 1e-3
    assert after["losses"] == pytest.approx(losses[:3], rel=1e-5)
    assert after["loss"] == pytest.approx(losses[3], rel=1e-5)
    assert after["loss"] < result["loss"]
    for i, block in enumerate(model.trf_blocks):
        assert after["per_block"][i]["attention"] == pytest.approx(_mean_abs(block.att.parameters()), rel=1e-4)
        assert after["per_block"][i]["ffn"] == pytest.approx(_mean_abs(block.ff.parameters()), rel=1e-4)
        assert after["per_block"][i]["all"] == pytest.approx(_mean_abs(block.parameters()), rel=1e-4)
    assert set(result) >= {"loss", "per_block", "per_matrix", "first_over_last", "after_steps"}


def test_gradflow_without_shortcuts_starves_the_early_blocks(write_spec):
    """The book's section 4.4 on a whole GPT: without the shortcut the first block's gradient
    falls one to two orders of magnitude below the last block's after 3 AdamW steps (about 0.01
    here, 0.0006 at width 256 and 12 blocks); with it, the blocks stay alike. At initialization
    the pre-norms inside each block keep the two within a factor of about 2 (0.6 to 1.4)."""
    ratios = {}
    for residual in ("pre_norm", "none"):
        result = explorer.analyze(_gradflow_spec(write_spec, residual), only=["gradflow"])
        ratios[residual] = result["analyses"]["gradflow"]["after_steps"]["first_over_last"]
    assert ratios["pre_norm"] > 0.5
    assert ratios["none"] < 0.1
    assert ratios["pre_norm"] / ratios["none"] > 10


# -- summary ---------------------------------------------------------------------------------

@pytest.mark.parametrize("tying", ["none", "tied"])
def test_summary_counts_add_up_to_the_params_total(make_spec, tying):
    spec = make_spec(weight_tying=tying)
    report = explorer.analyze(spec, only=["summary", "params"])["analyses"]
    summary, total = report["summary"], report["params"]["total"]
    rows = {r["name"]: r for r in summary["rows"]}
    assert summary["total"] == total
    assert sum(r["params"] for r in summary["rows"] if r["depth"] == 1) == total
    for name, row in rows.items():  # a row is its own parameters plus its children's
        children = [r for r in summary["rows"] if r["depth"] == row["depth"] + 1
                    and r["name"].startswith(name + "." if name else "")]
        if row["depth"] < summary["depth"]:
            assert row["params"] == row["own_params"] + sum(c["params"] for c in children)
    h, vocab = 16, 256  # conftest's tiny model
    assert rows["tok_emb"]["params"] == vocab * h
    assert rows["trf_blocks.0.att"]["params"] == 3 * h * h + h * h + h
    assert rows["trf_blocks.0.ff"]["output_shape"] == [1, 8, h]
    assert rows[""]["output_shape"] == [1, 8, vocab]
    assert rows["out_head"]["params"] == (0 if tying == "tied" else vocab * h)
    assert summary["tied"] == (["out_head.weight = tok_emb.weight"] if tying == "tied" else [])

    ctx = explorer.AnalysisContext(spec)
    summary_analysis = spec.plugin_manager.registry().analysis("summary")
    summary_analysis.load()(ctx, **summary_analysis.defaults())  # the Params hold the defaults
    assert not ctx.has_model  # it ran on the meta device: no weights were built


# -- train -----------------------------------------------------------------------------------

TRAIN = {"steps": 200, "batch_size": 8, "lr": 3e-3, "eval_every": 50, "eval_tokens": 4096}


def test_training_beats_the_unigram_baseline(write_spec):
    spec = _spec(write_spec, tokenizer="bytes", vocab_size=256, context_length=64, emb_dim=32,
                 n_heads=4, n_layers=2, analyses={"train": TRAIN})
    result = explorer.analyze(spec, only=["train"])["analyses"]["train"]

    # The unigram baseline by hand: add-one smoothed byte frequencies of the first 90 %,
    # scored on the validation targets the curve uses (windows of 64 from the last 10 %).
    data = load_corpus()[0].encode("utf-8")
    split = int(0.9 * len(data))
    train, val = data[:split], data[split:]
    windows = (min(len(val), 4096 + 1) - 1) // 64
    targets = val[1: windows * 64 + 1]
    counts = Counter(train)
    baseline = -sum(math.log((counts[t] + 1) / (len(train) + 256)) for t in targets) / len(targets)
    assert result["unigram_baseline"] == pytest.approx(baseline, rel=1e-9)
    assert result["corpus"]["eval_tokens"]["val"] == len(targets)

    curve = result["curve"]
    assert [p["step"] for p in curve] == [0, 50, 100, 150, 200]
    assert curve[0]["val_loss"] == pytest.approx(math.log(256), abs=0.5)  # about uniform at init
    assert curve[-1]["val_loss"] < curve[0]["val_loss"]
    assert result["final_val_loss"] == curve[-1]["val_loss"]
    assert result["final_val_perplexity"] == pytest.approx(math.exp(result["final_val_loss"]))
    assert result["final_val_loss"] < baseline - 0.3  # more than token frequencies were learned
    assert result["below_unigram"] is True
    assert len(result["batch_losses"]) == 200


def test_training_is_seeded_and_leaves_the_model_alone(write_spec, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    options = {"steps": 5, "seq_len": 16, "eval_every": 2, "corpus": str(corpus)}
    spec = _spec(write_spec, tokenizer="bytes", vocab_size=256, context_length=32,
                 analyses={"train": options})
    ctx = explorer.AnalysisContext(spec)
    run = spec.plugin_manager.registry().analysis("train").load()
    first = run(ctx, **spec.analyses["train"])
    assert all(torch.equal(a, b) for a, b in
               zip(ctx.model().parameters(), explorer.build_model(spec).parameters()))
    timings = ("train_seconds", "eval_seconds", "tokens_per_second",  # the clock, not the seed
               "first_step_seconds")
    again = run(ctx, **spec.analyses["train"])
    assert {k: v for k, v in again.items() if k not in timings} == {
        k: v for k, v in first.items() if k not in timings}
    assert first["corpus"]["source"] == str(corpus)
    assert [p["step"] for p in first["curve"]] == [0, 2, 4, 5]


def test_training_on_a_missing_corpus_names_the_path(write_spec, tmp_path):
    missing = tmp_path / "nope.txt"
    spec = _spec(write_spec, tokenizer="bytes", vocab_size=256,
                 analyses={"train": {"corpus": str(missing)}})
    report = explorer.analyze(spec, only=["train"])
    assert report["failures"]["train"] == f"train: corpus {missing}: no such file"


def test_training_corpus_too_short_for_the_window(write_spec, tmp_path):
    corpus = tmp_path / "short.txt"
    corpus.write_text("tiny")
    spec = _spec(write_spec, tokenizer="bytes", vocab_size=256,
                 analyses={"train": {"corpus": str(corpus)}})
    report = explorer.analyze(spec, only=["train"])
    assert report["failures"]["train"] == (
        f"train: corpus {corpus} has 4 tokens: its train (3) and validation (1) splits each "
        f"need more than seq_len 8 tokens")
