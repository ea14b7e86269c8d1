#!/usr/bin/env python
"""Scratch measurements of forward-pass speed-ups, patched onto an explorer model in eval mode.

    python benchmarks/prototypes.py [--seq-lens 128,512,1024] [--repeats 5] [--compile]

Not part of explorer: each variant monkeypatches module instances of a built gpt2_small
(eval, fp32, batch 1) to try one idea the performance issue lists, and is timed round-robin
with the unpatched model, the book's GPTModel and HF's sdpa GPT-2 in this one process. It
prints tokens/s, the ratio against the book and HF, and the largest |logit| difference from
the unpatched explorer model (the numbers each idea would change). Variants, cumulative:

  base       explorer as built from specs/gpt2_small.yaml (its default attention impl)
  manual     the same with components.attention.impl=manual (the book's masked softmax)
  nomask     attention straight to F.scaled_dot_product_attention(is_causal=True): no (T, T)
             mask or position-difference tensor is computed when is_causal covers it
  +qkv       and one (3d, d) matmul for Q, K and V: the three weights concatenated once, cached
  +ln        and F.layer_norm instead of the book's mean/var/sqrt LayerNorm
  +gelu      and F.gelu(approximate="tanh") instead of the book's written-out tanh GELU
  +prepack   and every Linear (head included) through oneDNN with its weight reordered once
             (torch.ops.mkldnn._reorder_linear_weight / _linear_pointwise): what inductor's
             freezing does for matmuls, done by hand in eager mode
  compile    torch.compile(base) (inductor, CPU; --compile, compile time reported separately;
             --freezing also folds the weights in as constants, prepacked for oneDNN)
"""

import argparse
import os
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402  (benchmarks/run.py: flops)
from models import build_book, build_explorer, build_hf, forward_fn  # noqa: E402
from timing import PEAK, median, peak_case, peak_flops, round_robin  # noqa: E402


def sdpa_forward(self, x, pos, positions, *args, **kwargs):
    """Causal self-attention through torch's fused kernel; Q, K, V from one cached matmul."""
    import torch.nn.functional as F

    b, t, d = x.shape
    fused = getattr(self, "_bench_qkv", None)
    if fused is not None:
        q, k, v = fused(x).split(d, dim=-1)  # (B, T, d) each
    else:
        q, k, v = self.W_query(x), self.W_key(x), self.W_value(x)
    q = q.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
    k = k.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
    v = v.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
    q, k = pos.rotate(q, k, positions)
    context = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
    return self.out_proj(context.transpose(1, 2).reshape(b, t, d))


def layer_norm_forward(self, x):
    import torch.nn.functional as F

    return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


def prepacked_forward(self, x):
    import torch

    return torch.ops.mkldnn._linear_pointwise(x, self._bench_packed, self.bias, "none", [], "")


def patch(model, qkv=False, gelu=False, ln=False, prepack=False):
    """Patch ``model`` (explorer gpt2_small, eval) in place; returns it."""
    import torch
    from torch import nn

    for block in model.trf_blocks:
        att = block.att
        att.forward = types.MethodType(sdpa_forward, att)
        if qkv:
            w = torch.cat([att.W_query.weight, att.W_key.weight, att.W_value.weight])  # (3d, d)
            bias = None
            if att.W_query.bias is not None:
                bias = torch.cat([att.W_query.bias, att.W_key.bias, att.W_value.bias])
            att._bench_qkv = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
            att._bench_qkv.weight = nn.Parameter(w, requires_grad=False)
            if bias is not None:
                att._bench_qkv.bias = nn.Parameter(bias, requires_grad=False)
        if gelu:
            block.ff.layers[1] = nn.GELU(approximate="tanh")
    if ln:
        for m in model.modules():
            if type(m).__name__ == "LayerNorm" and hasattr(m, "scale"):
                m.forward = types.MethodType(layer_norm_forward, m)
    if prepack:
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m._bench_packed = torch.ops.mkldnn._reorder_linear_weight(m.weight.detach(), 128)
                m.forward = types.MethodType(prepacked_forward, m)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seq-lens", default="128,512,1024")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also torch.compile(base)")
    parser.add_argument("--freezing", action="store_true",
                        help="compile with torch._inductor.config.freezing (weights folded "
                             "as constants and prepacked for oneDNN)")
    parser.add_argument("--variants", default="base,manual,nomask,+qkv,+ln,+gelu,+prepack")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(os.cpu_count())
    print(f"torch.set_num_threads({os.cpu_count()}), load average {os.getloadavg()[0]:.2f}")
    settings = {"base": None, "manual": None, "nomask": {}, "+qkv": {"qkv": True},
                "+ln": {"qkv": True, "ln": True},
                "+gelu": {"qkv": True, "ln": True, "gelu": True},
                "+prepack": {"qkv": True, "ln": True, "gelu": True, "prepack": True}}
    models = {}
    for name in args.variants.split(","):
        m = build_explorer("manual" if name == "manual" else None)
        models[name] = ("explorer", m if settings[name] is None else patch(m, **settings[name]))
    models["book"] = ("book", build_book())
    models["hf sdpa"] = ("hf", build_hf("sdpa"))
    compile_s = {}
    if args.freezing:
        import torch._inductor.config

        torch._inductor.config.freezing = True
    matmul = peak_case()
    for t in map(int, args.seq_lens.split(",")):
        x = torch.randint(0, 50257, (1, t), generator=torch.Generator().manual_seed(t))
        cases = {name: forward_fn(kind, m, x) for name, (kind, m) in models.items()}
        if args.compile:
            compiled = torch.compile(models["base"][1])
            start = time.perf_counter()
            with torch.inference_mode():
                compiled(x)
            compile_s[t] = time.perf_counter() - start
            cases["compile"] = forward_fn("explorer", compiled, x)
        cases[PEAK] = matmul
        with torch.inference_mode():
            ref = models["base"][1](x)
            diffs = {n: (models[n][1](x) - ref).abs().max().item()
                     for n in models if n not in ("base", "book", "hf sdpa")}
            if args.compile:
                diffs["compile"] = (compiled(x) - ref).abs().max().item()
        times = round_robin(cases, args.repeats)
        peak = peak_flops(times.pop(PEAK))
        fpt = run.flops_per_token(t)
        tps = {n: t / median(ts) for n, ts in times.items()}
        print(f"\nT={t} (peak {peak / 1e9:.1f} GFLOP/s"
              + (f", compile took {compile_s[t]:.0f} s" if t in compile_s else "") + ")")
        print(f"  {'variant':<10} {'ms':>7} {'tok/s':>7} {'MFU':>5} {'/book':>6} {'/HF':>6} "
              f"{'/base':>6} {'max|dlogit|':>11}")
        for n, v in tps.items():
            print(f"  {n:<10} {t / v * 1e3:>7.0f} {v:>7.0f} {fpt * v / peak:>5.0%} "
                  f"{v / tps['book']:>6.2f} {v / tps['hf sdpa']:>6.2f} {v / tps['base']:>6.2f} "
                  f"{diffs.get(n, 0.0):>11.2e}")


if __name__ == "__main__":
    main()
