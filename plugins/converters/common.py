"""What Hugging Face configs of every family say alike: sizes, activations, RoPE, dropout.

Each helper reads fields through the :class:`explorer.hf_config.HFConfig` (so they count as
read) and writes the spec keys they set, naming the fields they came from.
"""

GPT2_VOCAB = 50257  # the one vocabulary explorer has a tokenizer for besides bytes

# transformers' ACT2FN names -> explorer's activation components.
ACTIVATIONS = {
    "silu": "silu", "swish": "silu",
    "gelu": "gelu", "gelu_python": "gelu",
    "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh",
    "gelu_python_tanh": "gelu_tanh",
    "relu": "relu", "relu2": "squared_relu",
}
# ... and the name an exported config.json gives each.
HF_ACTIVATIONS = {"silu": "silu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh",
                  "relu": "relu", "squared_relu": "relu2"}


def sizes(cfg, emb="hidden_size", heads="num_attention_heads", layers="num_hidden_layers",
          context="max_position_embeddings", context_default=...):
    """The model's sizes, and the tokenizer: GPT-2's for GPT-2's vocabulary, else bytes (the
    models' own tokenizers are not available offline; explorer's bytes cover any vocabulary of
    at least 256)."""
    vocab = cfg.integer("vocab_size", minimum=1)
    cfg.set("tokenizer", "gpt2" if vocab == GPT2_VOCAB else "bytes", "vocab_size")
    cfg.set("model.vocab_size", vocab, "vocab_size")
    cfg.set("model.context_length", cfg.integer(context, context_default, minimum=1), context)
    cfg.set("model.emb_dim", cfg.integer(emb, minimum=1), emb)
    cfg.set("model.n_heads", cfg.integer(heads, minimum=1), heads)
    cfg.set("model.n_layers", cfg.integer(layers, minimum=1), layers)


def activation(cfg, field, default):
    name = cfg.text(field, default)
    if name not in ACTIVATIONS:
        raise cfg.refuse(field, f"{name!r} has no explorer activation",
                         f"explorer computes {', '.join(sorted(ACTIVATIONS))}")
    cfg.choose("activation", ACTIVATIONS[name], field)


def attention_dropout(cfg, field="attention_dropout"):
    rate = cfg.number(field, 0.0) or 0.0
    if rate:
        cfg.set("model.dropout.attention", rate, field)


def tying(cfg, default):
    tied = cfg.flag("tie_word_embeddings", default)
    cfg.choose("weight_tying", "tied" if tied else "none", "tie_word_embeddings")


def rmsnorm(cfg, default_eps, field="rms_norm_eps", **params):
    cfg.choose("norm", "rmsnorm")
    cfg.set("components.norm.eps", cfg.number(field, default_eps), field)
    for name, value in params.items():
        cfg.set(f"components.norm.{name}", value)


def head_dim(cfg, default=None, field="head_dim"):
    """The attention's head size when a config sets one other than hidden_size / heads."""
    size = cfg.integer(field, default, minimum=1)
    emb, heads = cfg.doc["model"]["emb_dim"], cfg.doc["model"]["n_heads"]
    if size is not None and size * heads != emb:
        raise cfg.refuse(field, f"{size} differs from hidden_size / num_attention_heads = "
                         f"{emb} / {heads}", "explorer's attention has head size emb_dim / n_heads")


# -- RoPE ------------------------------------------------------------------------------------

def rope(cfg, default_theta):
    """``positional: rope`` from ``rope_theta`` + ``rope_scaling`` (the published configs,
    transformers 4) or ``rope_parameters`` (transformers 5)."""
    params = dict(cfg.mapping("rope_parameters"))
    legacy = cfg.mapping("rope_scaling")
    if params:
        theta_field, scaling, where = "rope_parameters", params, "rope_parameters"
        theta = params.pop("rope_theta", None)
        theta = default_theta if theta is None else theta
        cfg.ignore("rope_theta")
    else:
        theta_field, scaling, where = "rope_theta", dict(legacy), "rope_scaling"
        theta = cfg.number("rope_theta", default_theta)
    kind = scaling.pop("rope_type", scaling.pop("type", "default"))
    partial = scaling.pop("partial_rotary_factor", cfg.number("partial_rotary_factor", 1.0))
    if partial != 1.0:
        raise cfg.refuse("partial_rotary_factor", f"{partial}: rope on part of each head",
                         "explorer's rope rotates the whole head (1.0)")
    cfg.choose("positional", "rope", theta_field)
    cfg.set("components.positional.theta", float(theta), theta_field)
    if kind != "default":
        raise cfg.refuse(where, f"type {kind!r} has no explorer equivalent",
                         "explorer's rope has no scaling (default)")
