"""One training step of gpt2_small, explorer against the book and Hugging Face (a part of run.py).

A step is what a training loop does per batch: a forward at batch 4 x 256 in train mode, the
cross-entropy of the next tokens (``F.cross_entropy`` on the logits, the same code for every
model), backward, one AdamW step, gradients set to None. Every peer uses the same optimizer
settings (lr 4e-4, weight decay 0.1, torch's default betas and eps) with the AdamW
implementation its own training code uses:

- explorer: ``specs/gpt2_small.yaml`` with impl auto (its fast path), built with seed 123;
  ``explorer.training.optimizers.adamw``, torch's fused AdamW, as explorer's training loop uses.
- book: ``llms_from_scratch.ch04.GPTModel``; ``torch.optim.AdamW`` with its defaults
  (foreach), as the book's ``train_model_simple`` (chapter 5) creates it.
- HF: ``GPT2LMHeadModel`` with sdpa attention and ``tie_word_embeddings=False`` (the book's
  163M-parameter layout, so every peer steps the same parameters); ``torch.optim.AdamW(
  fused=True)``, what the Trainer's default ``adamw_torch_fused`` is on torch >= 2.8.

The models take turns with a 4096^3 matmul (the peak for MFU, timed under the same load).
MFU = training FLOPs per token (explorer.measure.costs: 3 x the forward's closed form, full s x s
attention; the AdamW step is not counted) x tokens / seconds / peak.

With ``compile``: an ``explorer compiled`` row, ``torch.compile`` of the explorer model; its
first step (the compilation) is timed apart and turned into the number of steps after which
compiling pays: compile seconds / seconds saved per step.
"""

import gc

from timing import PEAK, log, median, peak_case, peak_flops, round_robin, timed

BATCH, SEQ = 4, 256
LR, WEIGHT_DECAY = 4e-4, 0.1
DROPOUTS = (0.1, 0.0)


def training_flops_per_token():
    """explorer's closed form for gpt2_small at SEQ: 3 x (2 N_matmul + 4 L s h + 2 h V)."""
    import explorer
    from explorer.measure.costs import static_costs

    spec = explorer.load_spec(_spec_path())
    return static_costs(spec, SEQ)["training_flops_per_token"]


def _spec_path():
    from models import ROOT

    return ROOT / "specs" / "gpt2_small.yaml"


def build_peers(drop_rate, compile=False):
    """name -> (kind, model, optimizer), each model in train mode with its AdamW."""
    import torch
    from llms_from_scratch.ch04 import GPTModel
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    import explorer
    from explorer.training.optimizers import adamw
    from models import book_config, explorer_spec

    logging.set_verbosity_error()
    ours = explorer.build_model(explorer_spec(drop_rate=drop_rate), seed=123).train()
    peers = {"explorer": ("explorer", ours, adamw(ours.parameters(), LR, WEIGHT_DECAY))}
    if compile:
        twin = explorer.build_model(explorer_spec(drop_rate=drop_rate), seed=123).train()
        peers["explorer compiled"] = ("explorer", torch.compile(twin),
                                      adamw(twin.parameters(), LR, WEIGHT_DECAY))
    torch.manual_seed(123)
    book = GPTModel({**book_config(), "drop_rate": drop_rate}).train()
    peers["book"] = ("book", book, torch.optim.AdamW(book.parameters(), lr=LR,
                                                     weight_decay=WEIGHT_DECAY))
    torch.manual_seed(123)
    hf = GPT2LMHeadModel(GPT2Config(attn_implementation="sdpa", tie_word_embeddings=False,
                                    resid_pdrop=drop_rate, embd_pdrop=drop_rate,
                                    attn_pdrop=drop_rate)).train()
    peers["hf sdpa"] = ("hf", hf, torch.optim.AdamW(hf.parameters(), lr=LR,
                                                    weight_decay=WEIGHT_DECAY, fused=True))
    return peers


def step_fn(kind, model, optimizer, inputs, targets):
    """One training step of ``model`` on the fixed batch."""
    from torch.nn import functional as F

    def step():
        out = model(input_ids=inputs, use_cache=False).logits if kind == "hf" else model(inputs)
        loss = F.cross_entropy(out.flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def bench_train(repeats, compile=False):
    """{dropout: {model: figures}} for one training step at BATCH x SEQ, round-robin."""
    import torch

    from explorer.training.optimizers import optimizer_name

    matmul = peak_case()
    ids = torch.randint(0, 50257, (BATCH, SEQ + 1), generator=torch.Generator().manual_seed(0))
    inputs, targets = ids[:, :-1], ids[:, 1:]
    fpt = training_flops_per_token()
    results = {}
    for drop_rate in DROPOUTS:
        peers = build_peers(drop_rate, compile)
        log(f"  training step, dropout {drop_rate}: {', '.join(peers)} x{repeats}")
        cases = {name: step_fn(kind, model, opt, inputs, targets)
                 for name, (kind, model, opt) in peers.items()}
        first = {name: timed(fn)[0] for name, fn in cases.items() if "compiled" in name}
        cases[PEAK] = matmul
        times = round_robin(cases, repeats)  # the warm-up also allocates the AdamW state
        peak = peak_flops(times.pop(PEAK))
        row = {}
        for name, ts in times.items():
            sec = median(ts)
            row[name] = {"seconds": ts, "median_s": sec, "tokens_per_s": BATCH * SEQ / sec,
                         "mfu": fpt * BATCH * SEQ / sec / peak, "peak_flops_per_s": peak,
                         "optimizer": optimizer_name(peers[name][2])}
        for name, seconds in first.items():
            row[name].update(pays_off(seconds, row[name]["median_s"], row["explorer"]["median_s"]))
        results[drop_rate] = row
        del peers, cases
        gc.collect()
    return {"batch": BATCH, "seq_len": SEQ, "lr": LR, "weight_decay": WEIGHT_DECAY,
            "training_flops_per_token": fpt, "by_dropout": results}


def pays_off(first_call_s, compiled_s, eager_s):
    """The first compiled step's time, the compilation it holds, and the steps after which the
    compiled model has caught up (None when it is not faster per step)."""
    compile_s = max(first_call_s - compiled_s, 0.0)
    saved = eager_s - compiled_s
    return {"first_call_s": first_call_s, "compile_s": compile_s, "saved_per_step_s": saved,
            "pays_off_after_steps": compile_s / saved if saved > 0 else None}


def render_train(train):
    out = [f"## One training step, batch {train['batch']} x {train['seq_len']}, fp32, train mode "
           f"(forward, cross-entropy, backward, AdamW; median)", "",
           "| dropout | model | AdamW | s/step | tokens/s | MFU | explorer / this |",
           "|---|---|---|---|---|---|---|"]
    notes = []
    for drop_rate, row in train["by_dropout"].items():
        ex = row["explorer"]["median_s"]
        for name, v in row.items():
            out.append(f"| {drop_rate} | {name} | {v['optimizer']} | {v['median_s']:.2f} | "
                       f"{v['tokens_per_s']:,.0f} | {v['mfu']:.0%} | {v['median_s'] / ex:.2f}x |")
            if "compile_s" in v:
                after = v["pays_off_after_steps"]
                notes.append(f"dropout {drop_rate}: torch.compile took {v['compile_s']:.0f} s "
                             f"(first step {v['first_call_s']:.0f} s) and saves "
                             f"{v['saved_per_step_s']:.2f} s per step: it pays off after "
                             + (f"{after:,.0f} steps" if after is not None else
                                "no number of steps (not faster per step)"))
    peak = next(iter(next(iter(train["by_dropout"].values())).values()))["peak_flops_per_s"]
    out += ["", "MFU = training FLOPs (explorer.measure.costs: 3 x forward, "
                f"{train['training_flops_per_token']:,} per token) / seconds / fp32 matmul peak ({peak / 1e9:.0f} GFLOP/s, a 4096^3 "
                "torch.mm timed in the same rounds). Every peer: lr 4e-4, weight decay 0.1, "
                "the same batch and loss code; HF untied (the book's 163M layout)."]
    out += [f"- {n}" for n in notes]
    return "\n".join(out)
