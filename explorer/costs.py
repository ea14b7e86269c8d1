"""Static cost figures of a model: parameters, FLOPs per token, and the memory a training run needs.

These are core functions, not analyses: the training loop turns a FLOPs budget into steps with
them, and a sweep shows them beside each run. The ``flops`` analysis reports the same closed
form (and checks it against torch's FlopCounterMode).

FLOPs are 2 per multiply-accumulate. Forward, per token, at sequence length s:

    2 * N_matmul            the weight matrices of all blocks (each weight used once per token)
  + 4 * L * s * h           attention's Q.K^T and weights.V over all s key positions
  + 2 * h * V               the output head

Training is forward + backward = 3 x forward.
"""

ADAMW_BYTES_PER_PARAMETER = 16  # fp32: weights 4 + gradients 4 + two moments 8


def closed_form(model, cfg, seq_len):
    """The closed-form counts for ``model`` (any device, the meta device included) at ``seq_len``.

    N_matmul counts the blocks' weight matrices (parameters with 2+ dimensions); biases, norms,
    activations and softmax are elementwise and not counted. The attention term is "full" (the
    s x s scores are computed, then masked); the causal half is given too.
    """
    blocks = {id(p) for p in model.trf_blocks.parameters()}
    positional = {id(p) for p in model.pos_emb.parameters()}
    embedding = {id(model.tok_emb.weight), id(model.out_head.weight)}  # one id when tied
    n_total = n_matmul = n_embedding = 0
    for p in model.parameters():  # each tensor once: a tied head is the embedding's Parameter
        n_total += p.numel()
        if id(p) in blocks and p.dim() >= 2:
            n_matmul += p.numel()
        if id(p) in embedding or id(p) in positional:
            n_embedding += p.numel()
    L, s, V = cfg.n_layers, seq_len, cfg.vocab_size
    h = cfg.n_heads * cfg.head_dim  # the query width the scores are computed over
    matmul, head = 2 * n_matmul, 2 * cfg.emb_dim * V
    attention_full, attention_causal = 4 * L * s * h, 2 * L * s * h
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


def static_costs(spec, seq_len):
    """Parameters and training FLOPs per token (3 x the full forward) of ``spec`` at ``seq_len``,
    from a model on the meta device: no weights are allocated, so any size answers at once."""
    from .model import build_model

    counts = closed_form(build_model(spec, device="meta"), spec.model, seq_len)
    return {"parameters": counts["parameters"],
            "forward_flops_per_token": counts["forward_per_token"]["total"],
            "training_flops_per_token": counts["training_per_token"]["3x_forward"]}


def activation_bytes(spec, batch_size, seq_len):
    """Bytes autograd saves for backward in one fp32 training step, measured on fake tensors
    (torch's FakeTensorMode runs the CPU's kernels and allocates nothing)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from .activations import saved_activation_bytes
    from .model import build_model

    with FakeTensorMode():
        return saved_activation_bytes(build_model(spec), batch_size, seq_len)["total"]


def run_costs(spec, batch_size, seq_len):
    """The static figures of one training run: parameters, training FLOPs per token, and the
    memory it holds at once (:func:`training_memory_bytes`)."""
    costs = static_costs(spec, seq_len)
    memory = training_memory_bytes(spec, batch_size, seq_len, costs["parameters"])
    return {**costs, "memory_bytes": memory["total"], "memory_parts": memory}


def training_memory_bytes(spec, batch_size, seq_len, parameters=None):
    """What one fp32 AdamW training run holds at once: weights + gradients + two moments
    (16 bytes per parameter) + the activations of one step at ``batch_size`` x ``seq_len``."""
    if parameters is None:
        parameters = static_costs(spec, seq_len)["parameters"]
    weights_and_optimizer = ADAMW_BYTES_PER_PARAMETER * parameters
    activations = activation_bytes(spec, batch_size, seq_len)
    return {"weights_and_optimizer": weights_and_optimizer, "activations": activations,
            "total": weights_and_optimizer + activations}
