"""Static cost figures of a model: parameters, FLOPs per token, and the memory a training run needs
(:func:`explorer.measure.resources.training_need`, the one prediction).

These are core functions, not analyses: the training loop turns a FLOPs budget into steps with
them, and a sweep shows them beside each run. The ``flops`` analysis reports the same closed
form (and checks it against torch's FlopCounterMode).

FLOPs are 2 per multiply-accumulate. Forward, per token, at sequence length s, summed over the
layers l (which may differ: a spec's ``layers:``):

    2 * N_active(l)                     the block's weight matrices one token uses (each once)
  + 2 * s * n_heads(l) * (d_qk(l) + d_v(l))
                                        its attention's Q.K^T (d_qk per head) and weights.V
                                        (d_v per head) over all s key positions
  + mixer(l) / s                       a linear-time mixer's own mixing, instead of the
                                        attention term: its ``explorer_flops(1, s)`` (the
                                        chunked form training runs, explorer.model.contracts)
  + 2 * h * V                           the output head

N_active counts parameters with 2+ dims; a module with ``active_parameters()`` (a mixture of
experts, explorer.model.contracts point 7) counts the matrices one token uses: router + shared
experts + top_k experts. Latent attention's projections (kv_up included: it expands each key's
latent once in a full forward) are matrices like any other. d_qk is the attention's
``head_dim``, d_v its ``v_head_dim`` if it has one (latent attention), else ``head_dim``: a
plain attention's term is 4 * s * n_heads * head_dim. The s x s scores are computed in full,
then masked (a sliding window masks more, it computes the same); the causal half is given too.
Biases, norms, activations, softmax and routing are elementwise and not counted. Training is
forward + backward = 3 x forward.

Importing this module does not import torch; ``closed_form`` takes a built model (the meta
device is enough).
"""

from explorer.model.contracts import (MIXER_FLOPS_METHOD, active_count_of_block,
                                      active_parameter_count)
from explorer.model.kinds import sublayers
from explorer.model.stack import layer_blocks, stack_total

def attention_width(block):
    """n_heads * (d_qk + d_v) summed over the block's softmax attention modules (found by kind;
    a linear-time mixer, with ``explorer_flops``, is costed by :func:`mixer_flops`)."""
    width = 0
    for _, kind, module in sublayers(block):
        if kind == "attention" and not hasattr(module, MIXER_FLOPS_METHOD):
            d_v = getattr(module, "v_head_dim", None) or module.head_dim
            width += module.n_heads * (module.head_dim + d_v)
    return width


def mixer_flops(block, seq_len):
    """Forward FLOPs of one sequence of ``seq_len`` tokens in the block's linear-time mixers,
    beyond their weight matrices (each mixer's ``explorer_flops(1, seq_len)``)."""
    return sum(getattr(module, MIXER_FLOPS_METHOD)(1, seq_len)
               for _, kind, module in sublayers(block)
               if kind == "attention" and hasattr(module, MIXER_FLOPS_METHOD))


def layer_costs(block, seq_len):
    """One block's forward FLOPs per token at ``seq_len``: ``matmul`` (2 * its active matrices),
    ``attention_full`` and ``attention_causal`` (softmax attention, plus a linear-time mixer's
    own mixing per token, which has no masked half), with the parameter counts they come from;
    ``mixer`` is that mixing alone."""
    matrices = sum(p.numel() for p in block.parameters() if p.dim() >= 2)
    active = active_parameter_count(block, matrices_only=True)
    width = attention_width(block)
    mixing = mixer_flops(block, seq_len)
    mixer = mixing / seq_len if mixing else 0  # per token (a chunk's cost spreads over it)
    return {"matmul_parameters": matrices, "active_matmul_parameters": active,
            "matmul": 2 * active, "attention_full": 2 * seq_len * width + mixer,
            "attention_causal": seq_len * width + mixer, "mixer": mixer}


def parameter_count(model):
    """Parameters of ``model`` (any module), each tensor once (``parameters()`` yields a shared
    one once)."""
    return sum(p.numel() for p in model.parameters())


def closed_form(model, cfg, seq_len):
    """The closed-form counts for ``model`` (any device, the meta device included; a compact
    model stands for its full stack, explorer.model.stack) at ``seq_len``: totals, ``per_layer``
    (one :func:`layer_costs` per block), and the 6N rules."""
    once, per_layer = {}, []  # a compact model repeats its blocks: each is costed once
    for block in layer_blocks(model):
        if id(block) not in once:
            once[id(block)] = layer_costs(block, seq_len)
        per_layer.append(dict(once[id(block)]))
    n_total = stack_total(model, parameter_count)
    embedding = {id(p): p for p in (model.tok_emb.weight, model.out_head.weight,
                                    *model.pos_emb.parameters())}  # tied: one entry
    n_embedding = sum(p.numel() for p in embedding.values())
    n_active = stack_total(model, active_parameter_count, active_count_of_block)
    matmul = sum(layer["matmul"] for layer in per_layer)
    attention_full = sum(layer["attention_full"] for layer in per_layer)
    attention_causal = sum(layer["attention_causal"] for layer in per_layer)
    mixer = sum(layer["mixer"] for layer in per_layer)
    head = 2 * cfg.emb_dim * cfg.vocab_size
    return {
        "parameters": n_total,
        "active_parameters": n_active,
        "matmul_parameters": sum(layer["matmul_parameters"] for layer in per_layer),
        "active_matmul_parameters": sum(layer["active_matmul_parameters"] for layer in per_layer),
        "nonembedding_parameters": n_total - n_embedding,
        "forward_per_token": {
            "matmul": matmul, "attention_full": attention_full,
            "attention_causal": attention_causal, "mixer": mixer, "head": head,
            "total": matmul + attention_full + head,
            "total_causal": matmul + attention_causal + head,
        },
        "training_per_token": {
            "3x_forward": 3 * (matmul + attention_full + head),
            "6N_nonembedding": 6 * (n_total - n_embedding),
            "6N_active_nonembedding": 6 * (n_active - n_embedding),
            "6N_all": 6 * n_total,
        },
        "per_layer": per_layer,
    }


def static_costs(spec, seq_len, model=None):
    """Parameters and training FLOPs per token (3 x the full forward) of ``spec`` at ``seq_len``,
    from a model on the meta device (``model``: a compact one built already): no weights are
    allocated, so any size answers at once."""
    from explorer.model.gpt import build_model

    model = model if model is not None else build_model(spec, device="meta", compact=True)
    counts = closed_form(model, spec.model, seq_len)
    return {"parameters": counts["parameters"],
            "forward_flops_per_token": counts["forward_per_token"]["total"],
            "training_flops_per_token": counts["training_per_token"]["3x_forward"]}


def run_costs(spec, config):
    """The static figures of one training run with ``config`` (a resolved
    :class:`explorer.TrainConfig`): parameters, training FLOPs per token, and the memory it
    holds at its peak: ``need``, :func:`explorer.measure.resources.training_need` (what the
    run's own check refuses by), and its total, ``memory_bytes``."""
    from explorer.measure.resources import training_need
    from explorer.model.gpt import build_model

    model = build_model(spec, device="meta", compact=True)
    need = training_need(spec, config, model=model, what="the run")
    return {**static_costs(spec, config.seq_len, model), "memory_bytes": need.total, "need": need}
