"""FLOPs per token: the closed form (explorer.measure.costs, layer by layer), the 6N rule, and torch's
FlopCounterMode as the check.

FLOPs are 2 per multiply-accumulate. Forward, per token, at sequence length s, summed over the
layers (explorer.measure.costs has the details):

    2 * N_active            the block weight matrices one token uses (a mixture of experts:
                            router + shared + top_k experts)
  + 2 * s * nh * (d_qk + d_v)
                            attention's Q.K^T and weights.V over all s key positions, with each
                            layer's heads (4 * s * nh * head_dim for a plain attention)
  + mixer / s               a linear-time mixer's own mixing instead (its explorer_flops: the
                            matrix products of the chunked form training runs; part of the
                            attention term, with no masked half)
  + 2 * h * V               the output head

Biases, norms, activations and softmax are elementwise and not counted (FlopCounterMode does
not count them either). The attention term is "full": the s x s scores are computed and then
masked, which is what the implementations do and what FlopCounterMode measures; counting only
the causal half gives half of it. Training is forward + backward = 3 x forward; Kaplan et al.
(2020) round it to 6 * N with N the non-embedding parameters (for a mixture of experts, the
active ones too).

The measurement runs on the meta device (no weights, free at any size), where
scaled_dot_product_attention runs as matmuls and a mixture of experts routes an equal share of
the tokens to each expert (there is no data to route on), so it sees top_k experts per token,
like the closed form. On a real CPU model torch 2.13's FlopCounterMode would miss the attention
term: it has no formula for the CPU's fused kernel (_scaled_dot_product_flash_attention_for_cpu).
"""

from explorer import Analysis, Param, hookimpl
from explorer.measure.costs import closed_form  # core: a training budget in FLOPs uses it too
from explorer.spec.layers import index_text
from explorer.model.stack import stack_plan

from . import seq_len_within_context


def count_flops(model, seq_len):
    """FlopCounterMode's forward and forward + backward counts for one (1, seq_len) sequence.

    On a compact model (explorer.model.stack) each built block's own counts (FlopCounterMode keeps
    them per module, backward included) stand for the layers configured like it; None if the
    counter named no block (then count on a full model).
    """
    import torch
    from torch.nn import functional as F
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    inputs = torch.zeros(1, seq_len, dtype=torch.long, device=device)
    counter = FlopCounterMode(display=False)
    with torch.enable_grad(), counter:
        logits = model(inputs)  # (1, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), inputs.flatten())
        forward = _stack_counts(model, counter.get_flop_counts())
        loss.backward()
        total = _stack_counts(model, counter.get_flop_counts())
    model.zero_grad(set_to_none=True)
    if forward is None or total is None:
        return None
    return {"forward": sum(forward.values()), "forward_by_op": forward,
            "forward_and_backward": sum(total.values())}


def _stack_counts(model, by_module):
    """``{op: FLOPs}`` of the full model from FlopCounterMode's counts per module: the global
    counts, with a compact model's built blocks replaced by each layer's."""
    plan = stack_plan(model)
    counts = {str(op): n for op, n in by_module["Global"].items()}
    if plan.is_full:
        return counts
    names = [f"{type(model).__name__}.trf_blocks.{k}" for k in range(len(plan.built))]
    if any(name not in by_module for name in names):
        return None
    layers = [plan.counts.count(k) for k in range(len(plan.built))]  # the layers each stands for
    for name, times in zip(names, layers):
        for op, n in by_module[name].items():
            counts[str(op)] += (times - 1) * n
    return counts


def flops(ctx, seq_len, measure):
    cfg = ctx.spec.model
    seq_len = seq_len or cfg.context_length
    if not 1 <= seq_len <= cfg.context_length:
        raise ValueError(f"flops: seq_len {seq_len} must be in 1..{cfg.context_length} "
                         f"(the context length); 0 means the context length")
    model = ctx.compact_model()  # one block per distinct layer, standing for the stack
    result = {"seq_len": seq_len, **closed_form(model, cfg, seq_len)}
    result["measured"] = m = None
    if measure:
        try:  # on the meta device: FlopCounterMode needs only shapes, free at any size
            m = (count_flops(ctx.meta_model(compact=True), seq_len)
                 or count_flops(ctx.meta_model(), seq_len))
        except (NotImplementedError, RuntimeError) as exc:  # a component that cannot run on meta
            result["measure_error"] = f"FlopCounterMode on the meta device failed: {exc}"
    if m:
        per_token = {"forward": m["forward"] / seq_len,
                     "training": m["forward_and_backward"] / seq_len}
        closed = result["forward_per_token"]["total"]
        result["measured"] = {
            "device": "meta", "tokens": seq_len, **m, "per_token": per_token,
            "forward_over_closed_form": per_token["forward"] / closed if closed else None,
        }
    result["conventions"] = (
        "2 FLOPs per multiply-accumulate; forward per token = sum over layers of 2*N_active (the "
        "block weight matrices one token uses: an MoE's router + shared + top_k experts) + "
        "2*s*n_heads*(d_qk + d_v) (Q.K^T and weights.V over all s positions: the full s x s "
        "scores are computed, then masked; the causal half is half of it; a linear-time mixer "
        "counts instead the matrix products of its chunked form, explorer_flops) + 2*h*V (head); "
        "elementwise ops (norms, activations, softmax, biases) are not counted. Training = 3 x "
        "forward; Kaplan's 6N uses N = parameters without the token/position embeddings and the "
        "untied head (6N_active: the active ones). Measured: "
        "torch.utils.flop_counter.FlopCounterMode on the meta device (where fused attention runs "
        "as countable matmuls and an MoE routes an equal share of tokens to each expert; on CPU "
        "FlopCounterMode misses the fused kernel), one sequence of seq_len tokens with the "
        "cross-entropy loss.")
    return result


def _g(n):
    for scale, unit in ((1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP")):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n:,.0f} FLOP"


def render(result):
    f, t = result["forward_per_token"], result["training_per_token"]
    total, active = result["matmul_parameters"], result["active_matmul_parameters"]
    weights = (f"{total:,} block weights" if active == total
               else f"{active:,} of {total:,} block weights active per token")
    rows = [(f"matmuls 2*N ({weights})", f["matmul"], ""),
            ("attention 2*s*nh*(d_qk+d_v) (all s x s)", f["attention_full"],
             f"causal half: {_g(f['attention_causal'])}"),
            *([("  of which linear-time mixers (chunked form)", f["mixer"], "")]
              if f.get("mixer") else []),
            ("head 2*h*V", f["head"], ""),
            ("total", f["total"], f"causal: {_g(f['total_causal'])}")]
    width = max(len(r[0]) for r in rows)
    lines = [f"forward per token at s = {result['seq_len']:,} (2 FLOPs per multiply-add):"]
    lines += [f"  {label:<{width}}  {_g(n):>14}  {note}".rstrip() for label, n, note in rows]
    lines += _layer_lines(result["per_layer"])
    active_n = ""
    if result["active_parameters"] != result["parameters"]:
        active_n = f"; 6*N active non-embedding {_g(t['6N_active_nonembedding'])}"
    lines.append(f"training per token: 3 x forward {_g(t['3x_forward'])}; 6*N non-embedding "
                 f"({result['nonembedding_parameters']:,}) {_g(t['6N_nonembedding'])}; "
                 f"6*N all ({result['parameters']:,}) {_g(t['6N_all'])}{active_n}")
    m = result["measured"]
    if m:
        lines.append(f"FlopCounterMode ({m['device']}, {m['tokens']:,} tokens): forward "
                     f"{_g(m['per_token']['forward'])} per token "
                     f"(closed form x {m['forward_over_closed_form']:.4f}), forward + backward "
                     f"{_g(m['per_token']['training'])} per token")
    return "\n".join(lines)


def _layer_lines(per_layer):
    """Per layer, when layers differ: the layers with the same figures on one line."""
    groups = {}
    for i, layer in enumerate(per_layer):
        groups.setdefault((layer["matmul"], layer["attention_full"]), []).append(i)
    if len(groups) < 2:
        return []
    return ["  per layer (matmuls + attention):"] + [
        f"    {index_text(ix)} ({len(ix)}): {_g(matmul)} + {_g(attention)}"
        for (matmul, attention), ix in groups.items()]


def figures(result):
    f, t = result["forward_per_token"], result["training_per_token"]
    return {"forward_per_token": f["total"], "forward_causal": f["total_causal"],
            "training_per_token": t["3x_forward"], "6N_nonembedding": t["6N_nonembedding"]}


@hookimpl
def explorer_analyses():
    return [Analysis(
        name="flops", run=flops, render=render, needs_weights=False, figures=figures,
        description="Forward FLOPs per token (closed form, attention's s x s terms), the 6N "
                    "training rule, and FlopCounterMode's count on the meta device.",
        params=(Param("seq_len", int, 0, "sequence length s (0: the context length)", min=0),
                Param("measure", bool, True, "also count with FlopCounterMode (meta "
                      "device: no weights, free at any size)")),
        check=seq_len_within_context,
    )]
