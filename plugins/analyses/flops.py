"""FLOPs per token: the closed form, the 6N rule, and torch's FlopCounterMode as the check.

FLOPs are 2 per multiply-accumulate. Forward, per token, at sequence length s:

    2 * N_matmul            the weight matrices of all blocks (each weight used once per token)
  + 4 * L * s * h           attention's Q.K^T and weights.V over all s key positions
  + 2 * h * V               the output head

N_matmul counts the blocks' weight matrices (parameters with 2+ dimensions); biases, norms,
activations and softmax are elementwise and not counted (FlopCounterMode does not count them
either). The attention term is "full": the s x s scores are computed and then masked, which is
what the implementations do and what FlopCounterMode measures; counting only the causal half
gives 2 * L * s * h. Training is forward + backward = 3 x forward; Kaplan et al. (2020) round
it to 6 * N with N the non-embedding parameters.

The measurement runs on the meta device (no weights, free at any size), where
scaled_dot_product_attention runs as matmuls. On a real CPU model torch 2.13's FlopCounterMode
would miss the attention term: it has no formula for the CPU's fused kernel
(_scaled_dot_product_flash_attention_for_cpu).
"""

from explorer import Analysis, Param, hookimpl

from . import seq_len_within_context
from .params import unique_parameters


def closed_form(model, cfg, seq_len):
    """The closed-form counts for ``model`` (any device) at ``seq_len`` tokens."""
    blocks = {id(p) for p in model.trf_blocks.parameters()}
    positional = {id(p) for p in model.pos_emb.parameters()}
    embedding = {id(model.tok_emb.weight), id(model.out_head.weight)}  # one id when tied
    n_total = n_matmul = n_embedding = 0
    for _, p in unique_parameters(model):
        n_total += p.numel()
        if id(p) in blocks and p.dim() >= 2:
            n_matmul += p.numel()
        if id(p) in embedding or id(p) in positional:
            n_embedding += p.numel()
    s, V = seq_len, cfg.vocab_size
    # The query width the scores are computed over, summed over the layers: each attention's
    # own n_heads * head_dim (a head size may differ from emb_dim / n_heads).
    h = sum(att.n_heads * att.head_dim for att in _attentions(model))
    matmul, head = 2 * n_matmul, 2 * cfg.emb_dim * V
    attention_full, attention_causal = 4 * s * h, 2 * s * h
    n_nonembedding = n_total - n_embedding
    return {
        "parameters": n_total,
        "matmul_parameters": n_matmul,
        "nonembedding_parameters": n_nonembedding,
        "forward_per_token": {
            "matmul": matmul, "attention_full": attention_full,
            "attention_causal": attention_causal, "head": head,
            "total": matmul + attention_full + head,
            "total_causal": matmul + attention_causal + head,
        },
        "training_per_token": {
            "3x_forward": 3 * (matmul + attention_full + head),
            "6N_nonembedding": 6 * n_nonembedding,
            "6N_all": 6 * n_total,
        },
    }


def _attentions(model):
    from explorer.kinds import sublayers

    return [m for block in model.trf_blocks for _, kind, m in sublayers(block) if kind == "attention"]


def count_flops(model, seq_len):
    """FlopCounterMode's forward and forward + backward counts for one (1, seq_len) sequence."""
    import torch
    from torch.nn import functional as F
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    inputs = torch.zeros(1, seq_len, dtype=torch.long, device=device)
    counter = FlopCounterMode(display=False)
    with torch.enable_grad(), counter:
        logits = model(inputs)  # (1, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), inputs.flatten())
        forward = counter.get_total_flops()
        by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
        loss.backward()
        total = counter.get_total_flops()
    model.zero_grad(set_to_none=True)
    return {"forward": forward, "forward_by_op": by_op, "forward_and_backward": total}


def flops(ctx, seq_len, measure):
    cfg = ctx.spec.model
    seq_len = seq_len or cfg.context_length
    if not 1 <= seq_len <= cfg.context_length:
        raise ValueError(f"flops: seq_len {seq_len} must be in 1..{cfg.context_length} "
                         f"(the context length); 0 means the context length")
    model = ctx.shape_model()
    result = {"seq_len": seq_len, **closed_form(model, cfg, seq_len)}
    result["measured"] = m = None
    if measure:
        try:  # on the meta device: FlopCounterMode needs only shapes, free at any size
            m = count_flops(ctx.meta_model(), seq_len)
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
        "2 FLOPs per multiply-accumulate; forward per token = 2*N_matmul (block weight matrices) "
        "+ 4*L*s*h (Q.K^T and weights.V over all s positions: the full s x s scores are computed, "
        "then masked; 2*L*s*h counts only the causal half) + 2*h*V (head); elementwise ops "
        "(norms, activations, softmax, biases) are not counted. Training = 3 x forward; Kaplan's "
        "6N uses N = parameters without the token/position embeddings and the untied head. "
        "Measured: torch.utils.flop_counter.FlopCounterMode on the meta device (where fused "
        "attention runs as countable matmuls; on CPU FlopCounterMode misses the fused kernel), "
        "one sequence of seq_len tokens with the cross-entropy loss.")
    return result


def _g(n):
    for scale, unit in ((1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP")):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n:,.0f} FLOP"


def render(result):
    f, t = result["forward_per_token"], result["training_per_token"]
    rows = [(f"matmuls 2*N ({result['matmul_parameters']:,} block weights)", f["matmul"], ""),
            ("attention 4*L*s*h (all s x s scores)", f["attention_full"],
             f"causal half 2*L*s*h: {_g(f['attention_causal'])}"),
            ("head 2*h*V", f["head"], ""),
            ("total", f["total"], f"causal: {_g(f['total_causal'])}")]
    width = max(len(r[0]) for r in rows)
    lines = [f"forward per token at s = {result['seq_len']:,} (2 FLOPs per multiply-add):"]
    lines += [f"  {label:<{width}}  {_g(n):>14}  {note}".rstrip() for label, n, note in rows]
    lines.append(f"training per token: 3 x forward {_g(t['3x_forward'])}; 6*N non-embedding "
                 f"({result['nonembedding_parameters']:,}) {_g(t['6N_nonembedding'])}; "
                 f"6*N all ({result['parameters']:,}) {_g(t['6N_all'])}")
    m = result["measured"]
    if m:
        lines.append(f"FlopCounterMode ({m['device']}, {m['tokens']:,} tokens): forward "
                     f"{_g(m['per_token']['forward'])} per token "
                     f"(closed form x {m['forward_over_closed_form']:.4f}), forward + backward "
                     f"{_g(m['per_token']['training'])} per token")
    return "\n".join(lines)


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
