"""Memory: weights, the AdamW training footprint, activations for backward, and the KV cache.

The training figures are the core's one prediction of a training run
(explorer.measure.resources.training_need): the same bytes the ``train`` analysis refuses by,
``explorer.train()`` checks and a sweep's ``--dry-run`` shows, at this analysis's batch and
sequence length.

Activations are measured exactly (explorer.measure.activations, shared through the AnalysisContext with
the analyses whose memory the core predicts): one training forward (model + cross-entropy loss)
runs under ``torch.autograd.graph.saved_tensors_hooks`` and the bytes of every storage autograd
keeps for backward are summed, each storage once. Parameters and buffers that autograd saves (a
Linear saves its weight) are weights, not activations, and are left out. The closed-form
estimate of Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
Models", section 4.1) is shown beside the measurement.
"""

from explorer import Analysis, ExplorerError, Param, hookimpl
from explorer.measure.resources import Need, Part
from explorer.training.settings import TrainConfig

from explorer.measure.costs import parameter_count
from explorer.spec.layers import index_text
from explorer.model.stack import stack_total

from . import seq_len_within_context

MB = 2**20  # the book's MB
BYTES = {"fp32": 4, "bf16": 2}


def korthikanti_per_layer(s, b, h, a):
    """Activation bytes per GPT-2 layer at 16-bit, dropout masks 1 byte: s*b*h*(34 + 5*a*s/h)."""
    return s * b * h * 34 + 5 * a * s * s * b


def korthikanti_at(p, s, b, h, a, attention_dropout, residual_dropout):
    """The same tensor list with p-byte values and only the dropouts the spec has.

    Per layer the paper keeps 16*s*b*h values (LayerNorm inputs 2, QKV input 1, Q and K 2, V 1,
    output-projection input 1, MLP input 1, GELU input 4, second-linear input 4) plus the
    softmax output (a*s*s*b values); attention dropout adds its output (a*s*s*b values) and its
    mask (a*s*s*b bytes); the two residual dropouts add 2*s*b*h mask bytes. At p = 2 with all
    dropouts this is s*b*h*(34 + 5*a*s/h).
    """
    values = 16 * s * b * h + a * s * s * b
    masks = 0
    if attention_dropout:
        values += a * s * s * b
        masks += a * s * s * b
    if residual_dropout:
        masks += 2 * s * b * h
    return p * values + masks


def _kv_cache(ctx, batch_size):
    """KV cache bytes, per token and at the full context, from each attention module's own
    layout (explorer.model.kv_cache.cache_layout), so any attention plugin gets its own figures;
    and the recurrent state of linear-time mixers, per sequence whatever its length.
    ``bytes_full_context`` is all a generating batch holds at the full context: both."""
    from explorer.model.kv_cache import cache_layout

    context = ctx.spec.model.context_length
    layers = cache_layout(ctx.compact_model())
    for layer in layers:  # a sliding window caps what a layer keeps
        layer["tokens"] = min(context, layer["window"]) if layer["window"] else context
        if not layer["values_per_token"]:
            layer["tokens"] = 0  # a recurrent mixer: its state does not grow with the tokens
        layer["bytes_per_token"] = {p: layer["values_per_token"] * size for p, size in BYTES.items()}
        layer["state_bytes_per_sequence"] = {
            p: layer["state_values_per_sequence"] * size for p, size in BYTES.items()}
    shapes = {(l["n_kv_heads"], l["head_dim"], l["window"], l["values_per_token"],
               l["state_values_per_sequence"]) for l in layers}
    first = layers[0] if len(shapes) == 1 else {}
    state = {p: sum(l["state_bytes_per_sequence"][p] for l in layers) for p in BYTES}
    result = {
        "n_kv_heads": first.get("n_kv_heads"), "head_dim": first.get("head_dim"),
        "window": first.get("window") or None, "batch_size": batch_size,
        "tokens": max((l["tokens"] for l in layers), default=0),
        "bytes_per_token": {p: sum(l["bytes_per_token"][p] for l in layers) for p in BYTES},
        "state_bytes_per_sequence": state,
        "bytes_full_context": {p: batch_size * (state[p] + sum(
            l["bytes_per_token"][p] * l["tokens"] for l in layers)) for p in BYTES},
    }
    if len(shapes) > 1:  # layers differ: show each
        result["per_layer"] = layers
    return result


def _cpu_need(ctx, batch_size, seq_len):
    """Measuring on the real model holds its weights, a bf16 copy, and one forward's saved
    activations (predicted from the fake-tensor measurement) with its logits."""
    from explorer.measure.resources import logits_bytes_per_token, weight_bytes

    model = ctx.compact_model()
    weights = weight_bytes(model)
    measuring = (
        Part("activations", ctx.activations_per_sequence(seq_len) * batch_size,
             note=f"at batch {batch_size} x {seq_len}"),
        Part("logits", batch_size * seq_len * logits_bytes_per_token(ctx.spec, model)))
    return Need("memory on device cpu", (Part("weights", weights), Part("a bf16 copy", weights // 2)),
                "lower analyses.memory.batch_size or analyses.memory.seq_len, or measure on "
                "analyses.memory.device fake (no memory used)", (measuring,))


def _measure(ctx, batch_size, seq_len, device):
    """Saved activations at fp32 and at bf16 (the model cast to bf16, no autocast).

    ``fake``: a model of fake CPU tensors (torch's FakeTensorMode): no memory is allocated, yet
    every op dispatches as on the CPU, fused attention kernels included. ``meta``: the meta
    device, where scaled_dot_product_attention falls back to its unfused math. ``cpu``: the
    real model, refused first if the prediction does not fit in memory.
    """
    if device == "cpu":
        ctx.require(_cpu_need(ctx, batch_size, seq_len))
    return {p: ctx.saved_activations(seq_len, batch_size, p, device) for p in BYTES}


def _on_device(ctx, batch_size, seq_len):
    """On an accelerator (the context's device is not the CPU): one real training step there
    (forward, backward, AdamW step, in the context's dtype) on the shared model, which the
    context builds again afterwards. The activations autograd saves on that device (its own
    kernels: CUDA's dropout masks are 1 byte, its attention kernels save their own tensors)
    and, on CUDA, the peak memory allocated (``torch.cuda.max_memory_allocated``) beside the
    prediction the core refuses by (:meth:`AnalysisContext.training_need`)."""
    import torch
    from torch.nn import functional as F

    from explorer.measure.activations import saved_activation_bytes
    from explorer.training.devices import peak_memory, reset_peak_memory
    from explorer.training.optimizers import adamw

    from explorer.training.settings import TrainConfig

    need = ctx.training_need(TrainConfig(batch_size=batch_size, seq_len=seq_len),
                             what="memory on the device", prefix="analyses.memory",
                             evaluation=False)
    ctx.require(need)
    with ctx.model_to_change() as model:
        with ctx.autocast():
            saved = saved_activation_bytes(model, batch_size, seq_len)
        reset_peak_memory(ctx.device)
        tokens = torch.zeros(batch_size, seq_len + 1, dtype=torch.long, device=ctx.device)
        with ctx.autocast():
            logits = model.train()(tokens[:, :-1])  # (B, T, V)
        F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten()).backward()
        del logits
        adamw(model.parameters(), 1e-3, 0.1).step()
        peak = peak_memory(ctx.device)
    return {"device": str(ctx.device), "dtype": ctx.dtype, "saved_activations": saved,
            "saved_activations_bytes": saved["total"], "peak_bytes": peak,
            "predicted_peak_bytes": need.total,
            "peak_source": "torch.cuda.max_memory_allocated" if peak is not None else None}


def footprint(ctx, batch_size, seq_len, device):
    cfg = ctx.spec.model
    seq_len = seq_len or cfg.context_length
    if not 1 <= seq_len <= cfg.context_length:
        raise ValueError(f"memory: seq_len {seq_len} must be in 1..{cfg.context_length} "
                         f"(the context length); 0 means the context length")
    if batch_size < 1:
        raise ValueError(f"memory: batch_size must be >= 1, got {batch_size}")
    model = ctx.compact_model()  # one block per distinct layer, standing for the stack
    n = stack_total(model, parameter_count)
    buffers = stack_total(model, lambda m: sum(b.numel() * b.element_size() for b in m.buffers()))
    weights = {"fp32": 4 * n, "fp16": 2 * n, "bf16": 2 * n}
    run = ctx.training_need(TrainConfig(batch_size=batch_size, seq_len=seq_len),
                            what="a training run (explorer.train, the train analysis, sweeps)")
    held = {p.name: p.total for p in run.parts}
    # AdamW keeps two moments per parameter (exp_avg, exp_avg_sq), in fp32.
    training = {
        "fp32": {"weights": held["weights"], "gradients": held["gradients"],
                 "optimizer": held["AdamW"]},
        # bf16 mixed precision: bf16 working weights and gradients, an fp32 master copy.
        "bf16_mixed": {"weights": held["weights"] // 2, "master_weights": held["weights"],
                       "gradients": held["gradients"] // 2, "optimizer": held["AdamW"]},
    }
    for parts in training.values():
        parts["total"] = sum(parts.values())

    note = None
    try:
        measured = _measure(ctx, batch_size, seq_len, device)
    except ExplorerError:
        raise
    except Exception as exc:  # a component fake tensors cannot run (data-dependent code)
        if device != "fake":
            raise
        note = f"fake tensors failed ({type(exc).__name__}: {exc}); measured on meta"
        device = "meta"
        measured = _measure(ctx, batch_size, seq_len, device)
    s, b, h, a = seq_len, batch_size, cfg.emb_dim, cfg.n_heads
    drop = cfg.dropout
    estimate = korthikanti_per_layer(s, b, h, a)
    same_list_fp32 = korthikanti_at(4, s, b, h, a, drop.attention, drop.residual)
    per_block = measured["fp32"]["per_block"]
    mean_block = sum(per_block) / len(per_block) if per_block else 0
    mean_block_bf16 = sum(measured["bf16"]["per_block"]) / len(per_block) if per_block else 0
    activations = {
        "batch_size": b, "seq_len": s, "device": device, "device_note": note,
        "measured_bytes": {p: m["total"] for p, m in measured.items()},
        "measured": measured,
        "korthikanti_per_layer_16bit": estimate,
        "korthikanti_per_layer_fp32_same_tensors": same_list_fp32,
        "measured_per_block_fp32": mean_block,
        "measured_per_block_bf16": mean_block_bf16,
        "ratio_fp32_block_to_korthikanti_16bit": mean_block / estimate if estimate else None,
        "ratio_bf16_block_to_korthikanti_16bit": (mean_block_bf16 / estimate
                                                  if estimate and per_block else None),
        "ratio_fp32_block_to_korthikanti_fp32": mean_block / same_list_fp32 if same_list_fp32 else None,
    }
    if ctx.device.type != "cpu":
        activations["on_device"] = _on_device(ctx, batch_size, seq_len)
    kv = _kv_cache(ctx, batch_size)
    inference = {p: weights[p] + kv["bytes_full_context"][p] for p in BYTES}
    training_total = {
        "fp32": training["fp32"]["total"] + measured["fp32"]["total"],
        "bf16_mixed": training["bf16_mixed"]["total"] + measured["bf16"]["total"],
    }
    return {
        "parameters": n,
        "weights_bytes": weights,
        "weights_mb": {k: round(v / MB, 2) for k, v in weights.items()},
        "buffers_bytes": buffers,
        "training_bytes": training,
        "training_mb": {k: round(v["total"] / MB, 2) for k, v in training.items()},
        "activations": activations,
        "kv_cache": kv,
        "inference_bytes": inference,
        "training_total_bytes": training_total,
        # What explorer's training loop holds at its peak at batch_size x seq_len (the train
        # analysis's other settings at their defaults): the one prediction.
        "training_run": run.to_dict(),
        "conventions": (
            "MB = 2**20 bytes; AdamW moments in fp32; bf16_mixed keeps an fp32 master copy and "
            "bf16 gradients (16 bytes/param, like fp32). Activations: the storages autograd saves "
            "for backward in one training forward (dropout active) plus the cross-entropy loss, "
            "each storage once at its full size; parameters and buffers autograd saves are "
            "weights and are not counted. bf16 activations: the model cast to bf16 (no autocast). "
            "Measured by default on fake CPU tensors (FakeTensorMode: the CPU's kernels, no "
            "memory); on the meta device scaled_dot_product_attention runs unfused and saves "
            "the s x s weights. PyTorch's CPU dropout keeps its mask in the input's dtype "
            "(CUDA's fused dropout: 1 byte). Korthikanti et al. 2022: s*b*h*(34 + 5*a*s/h) bytes "
            "per layer assuming 16-bit values, 1-byte dropout masks and unfused attention (fused "
            "attention removes the 5*a*s/h term); 'fp32_same_tensors' is that tensor list at 4 "
            "bytes with the spec's dropouts. "
            "KV cache: 2*L*b*s*k*d*p with k KV heads, s capped by a sliding window; a "
            "linear-time mixer keeps instead a recurrent state of a fixed size per sequence "
            "(state_bytes_per_sequence), included in bytes_full_context. Inference: "
            "weights + KV cache (+ state) at the full context. Training total: AdamW footprint + measured "
            "activations (fp32; bf16_mixed uses the bf16 measurement). training_run: what "
            "explorer's training loop holds at its peak at batch_size x seq_len, the prediction "
            "explorer.train(), the train analysis and sweeps refuse by: weights, buffers, "
            "gradients, AdamW moments, and the larger of a step (the activations measured at "
            "batch 1 times the batch, the logits and their two gradients) and an evaluation "
            "forward (explorer.measure.resources.training_need)."),
    }


def _mb(n):
    """Bytes in the book's units (KB = 2**10, MB = 2**20, GB = 2**30)."""
    for scale, unit in ((2**30, "GB"), (MB, "MB"), (2**10, "KB")):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n:,.0f} bytes"


def render(result):
    w, wm, t = result["weights_bytes"], result["weights_mb"], result["training_bytes"]
    lines = [f"weights  fp32 {wm['fp32']:>12,.2f} MB  ({w['fp32']:,} bytes)",
             f"         bf16 {wm['bf16']:>12,.2f} MB  (fp16 the same)"]
    if result["buffers_bytes"]:
        lines.append(f"buffers       {result['buffers_bytes'] / MB:>12,.2f} MB  (masks; not parameters)")
    for mode, parts in t.items():
        detail = ", ".join(f"{k} {_mb(v)}" for k, v in parts.items() if k != "total")
        lines.append(f"training {mode:<10} {parts['total'] / MB:>10,.2f} MB  (AdamW: {detail})")
    act = result["activations"]
    m = act["measured"]["fp32"]
    where = {"fake": "fake CPU tensors, no memory used", "meta": "the meta device",
             "cpu": "the real model"}.get(act["device"], act["device"])
    lines.append(f"activations for backward, batch {act['batch_size']} x {act['seq_len']} tokens "
                 f"(measured on {where}):")
    if act.get("device_note"):
        lines.append(f"  note: {act['device_note']}")
    lines.append(f"  fp32 {_mb(act['measured_bytes']['fp32'])}  bf16 {_mb(act['measured_bytes']['bf16'])}"
                 f"  (fp32: embedding {_mb(m['embedding'])}, blocks {_mb(m['blocks'])}, "
                 f"head {_mb(m['head'])}, loss {_mb(m['loss'])})")
    if act["korthikanti_per_layer_16bit"] and m["per_block"]:
        lines.append(f"  per block: measured fp32 {_mb(act['measured_per_block_fp32'])}, bf16 "
                     f"{_mb(act['measured_per_block_bf16'])}"
                     + (" (the mean)" if len(set(m["per_block"])) > 1 else ""))
        if len(set(m["per_block"])) > 1:  # layers differ: each, the blocks alike together
            alike = {}
            for i, n in enumerate(m["per_block"]):
                alike.setdefault(n, []).append(i)
            lines.append("  fp32 by block: " + ", ".join(f"{index_text(ix)}: {_mb(n)}"
                                                        for n, ix in alike.items()))
        lines.append(f"  Korthikanti et al. s*b*h*(34 + 5*a*s/h), 16-bit, 1-byte dropout masks: "
                     f"{_mb(act['korthikanti_per_layer_16bit'])} per layer "
                     f"(measured bf16 / it = {act['ratio_bf16_block_to_korthikanti_16bit']:.2f}); "
                     f"its tensors at fp32: {_mb(act['korthikanti_per_layer_fp32_same_tensors'])} "
                     f"(measured fp32 / it = {act['ratio_fp32_block_to_korthikanti_fp32']:.2f})")
    lines += _on_device_lines(act.get("on_device"))
    kv = result["kv_cache"]
    layers = kv.get("per_layer")
    shape = "layers differ" if layers else _kv_shape(kv)
    state = kv.get("state_bytes_per_sequence", {}).get("fp32")
    if state:
        lines.append(f"recurrent state (linear-time mixers): {state:,} / "
                     f"{kv['state_bytes_per_sequence']['bf16']:,} bytes per sequence fp32 / bf16, "
                     "whatever its length")
    at = "the full context" if layers else f"{kv['tokens']:,} tokens"
    lines.append(f"KV cache ({shape}): "
                 f"{kv['bytes_per_token']['fp32']:,} / {kv['bytes_per_token']['bf16']:,} bytes per "
                 f"token fp32 / bf16; at {at} x batch {kv['batch_size']}: "
                 f"{_mb(kv['bytes_full_context']['fp32'])} / {_mb(kv['bytes_full_context']['bf16'])}")
    groups = {}  # the layers alike, on one line
    for layer in layers or ():
        text = (f"{_kv_shape(layer)}, {layer['values_per_token']:,} values per token, "
                f"{layer['tokens']:,} tokens")
        if layer["state_values_per_sequence"]:
            text = f"recurrent state, {layer['state_values_per_sequence']:,} values per sequence"
        groups.setdefault(text, []).append(layer["layer"])
    lines.extend(f"  layer{'s' if len(ix) > 1 else ''} {index_text(ix)}: {text}"
                 for text, ix in groups.items())
    inf, tr = result["inference_bytes"], result["training_total_bytes"]
    held = "KV cache + state" if state else "KV cache"
    lines.append(f"inference (weights + {held})  fp32 {_mb(inf['fp32'])}  bf16 {_mb(inf['bf16'])}")
    lines.append(f"training (AdamW + activations)  fp32 {_mb(tr['fp32'])}  "
                 f"bf16_mixed {_mb(tr['bf16_mixed'])}")
    if "training_run" in result:
        lines.append(result["training_run"]["text"])
    return "\n".join(lines)


def _on_device_lines(on):
    if not on:
        return []
    lines = [f"  on {on['device']} ({on['dtype']}), one real training step: activations saved "
             f"{_mb(on['saved_activations_bytes'])}"]
    if on["peak_bytes"] is None:
        lines[0] += f"; peak memory not measured on {on['device']} (CUDA only)"
    else:
        lines.append(f"  peak allocated {_mb(on['peak_bytes'])} ({on['peak_source']})  predicted "
                     f"{_mb(on['predicted_peak_bytes'])}  (measured / predicted = "
                     f"{on['peak_bytes'] / on['predicted_peak_bytes']:.2f})")
    return lines


def figures(result):
    """In MB (2**20 bytes), unrounded: compare's differences are exact; display rounds."""
    act, tr = result["activations"]["measured_bytes"], result["training_total_bytes"]
    return {
        "weights_mb.fp32": result["weights_bytes"]["fp32"] / MB,
        # 16 bytes per parameter in fp32 and in bf16 mixed precision alike.
        "adamw_mb": result["training_bytes"]["fp32"]["total"] / MB,
        "activations_mb.fp32": act["fp32"] / MB,
        "activations_mb.bf16": act["bf16"] / MB,
        "kv_cache_mb.bf16": result["kv_cache"]["bytes_full_context"]["bf16"] / MB,
        "inference_mb.bf16": result["inference_bytes"]["bf16"] / MB,
        "train_total_mb.fp32": tr["fp32"] / MB,
        "train_total_mb.bf16": tr["bf16_mixed"] / MB,
    }


def _kv_shape(kv):
    if kv["n_kv_heads"] == 0:  # linear-time mixers only
        return "none: recurrent state"
    window = f", window {kv['window']}" if kv["window"] else ""
    return f"{kv['n_kv_heads']} KV heads x {kv['head_dim']}{window}"


@hookimpl
def explorer_analyses():
    return [Analysis(
        name="memory", run=footprint, render=render, needs_weights=False, figures=figures,
        description="Weights, AdamW footprint, activations autograd saves (measured) beside "
                    "Korthikanti et al.'s estimate, KV cache, inference and training totals.",
        params=(Param("batch_size", int, 1, "batch for the activations and the KV cache", min=1),
                Param("seq_len", int, 0, "tokens per sequence for the activations (0: context "
                      "length)", min=0),
                Param("device", str, "fake", "where to measure the activations: fake (CPU "
                      "kernels on fake tensors: no memory, any size), meta (unfused attention) "
                      "or cpu (the real model)", choices=("fake", "meta", "cpu"))),
        check=seq_len_within_context,
    )]
