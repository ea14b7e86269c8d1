"""What Hugging Face configs of every family say alike: sizes, activations, RoPE, dropout.

Each helper reads fields through the :class:`explorer.spec.hf_config.HFConfig` (so they count as
read) and writes the spec keys they set, naming the fields they came from.
"""

import math

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
    at least 256). ``layers`` None leaves the depth to the caller."""
    vocab = cfg.integer("vocab_size", minimum=1)
    cfg.set("tokenizer", "gpt2" if vocab == GPT2_VOCAB else "bytes", "vocab_size")
    cfg.set("model.vocab_size", vocab, "vocab_size")
    cfg.set("model.context_length", cfg.integer(context, context_default, minimum=1), context)
    cfg.set("model.emb_dim", cfg.integer(emb, minimum=1), emb)
    cfg.set("model.n_heads", cfg.integer(heads, minimum=1), heads)
    if layers is not None:
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


def kv_heads(cfg, default):
    """``num_key_value_heads`` as gqa's ``n_kv_heads``; null is one per query head."""
    kv = cfg.integer("num_key_value_heads", default, minimum=1)
    cfg.set("components.attention.n_kv_heads", kv or cfg.doc["model"]["n_heads"],
            "num_key_value_heads")


def attention_bias(cfg):
    """``attention_bias``, which biases q, k, v and o together."""
    bias = cfg.flag("attention_bias", False)
    cfg.set("model.qkv_bias", bias, "attention_bias")
    cfg.set("components.attention.out_bias", bias, "attention_bias")


def head_dim(cfg, default=None, field="head_dim"):
    """The attention's head size, when a config sets one other than hidden_size / heads
    (Gemma 2 2B: 256 at width 2304 with 8 heads; Qwen3 0.6B: 128 at 1024 with 16)."""
    size = cfg.integer(field, default, minimum=1)
    emb, heads = cfg.doc["model"]["emb_dim"], cfg.doc["model"]["n_heads"]
    if size is not None and size * heads != emb:
        cfg.set("components.attention.head_dim", size, field)


def select_layers(indices, n_layers):
    """A ``layers:`` selector for the layers ``indices`` of ``n_layers``: ``first``/``last``
    for a run at either end, ``every``/``offset`` for a stride, else the list."""
    indices = sorted(indices)
    if indices == list(range(len(indices))):
        return {"first": len(indices)}
    if indices == list(range(n_layers - len(indices), n_layers)):
        return {"last": len(indices)}
    for every in range(2, n_layers):
        offset = indices[0] % every
        if len(indices) > 1 and [i for i in range(n_layers) if i % every == offset] == indices:
            return {"every": every, "offset": offset}
    return {"layers": indices}


def windows(cfg, windowed, size, field):
    """A sliding window of ``size`` on the layers where ``windowed`` (a list of booleans) is
    true: spec-wide when every layer has it, else a ``layers:`` entry for those layers."""
    if not any(windowed):
        return
    if all(windowed):
        cfg.set("components.attention.window", size, field)
        return
    rule = {**select_layers([i for i, w in enumerate(windowed) if w], len(windowed)),
            "components": {"attention": {"window": size}}}
    cfg.set("layers", [*cfg.doc.get("layers", ()), rule], field)


def layer_types(cfg, n_layers, field="layer_types"):
    """transformers' ``layer_types`` as a list of booleans (whether each layer slides), or None
    when the config has none."""
    types = cfg.get(field)
    if types is None:
        return None
    kinds = ("full_attention", "sliding_attention")
    if not isinstance(types, list) or len(types) != n_layers or any(t not in kinds for t in types):
        raise cfg.refuse(field, f"expected {n_layers} entries, each one of {', '.join(kinds)}, "
                         f"got {str(types)[:80]}")
    return [t == "sliding_attention" for t in types]


# -- RoPE ------------------------------------------------------------------------------------

# Each rope_type explorer computes: its keys in the config -> (rope parameter, default); None
# for keys read by hand (factor for yarn, the attention factor's mscales).
ROPE_TYPES = {
    "default": {},
    "linear": {"factor": ("factor", ...)},
    "llama3": {"factor": ("factor", ...), "low_freq_factor": ("low_freq_factor", ...),
               "high_freq_factor": ("high_freq_factor", ...),
               "original_max_position_embeddings": ("original_context", ...)},
    "yarn": {"factor": None, "original_max_position_embeddings": ("original_context", ...),
             "beta_fast": ("beta_fast", 32.0), "beta_slow": ("beta_slow", 1.0),
             "truncate": ("truncate", True), "attention_factor": None, "mscale": None,
             "mscale_all_dim": None},
}


def rope(cfg, default_theta, partial=None):
    """``positional: rope`` from ``rope_theta`` + ``rope_scaling`` (the published configs,
    transformers 4) or ``rope_parameters`` (transformers 5), context extension included;
    ``partial``: for a family whose transformers code rotates part of each head (rope's
    ``fraction``), its default partial_rotary_factor; None: a factor other than 1 is refused. Returns the scaling's settings as
    the config gives them ({} for none)."""
    params = dict(cfg.mapping("rope_parameters"))
    if params:
        field, scaling = "rope_parameters", params
        theta = params.pop("rope_theta", default_theta)
        cfg.ignore("rope_theta", "rope_scaling")  # transformers 5 moved both in here
    else:
        field, scaling = "rope_scaling", dict(cfg.mapping("rope_scaling"))
        theta = cfg.number("rope_theta", default_theta)
    kind = scaling.pop("rope_type", scaling.pop("type", "default"))
    fraction = scaling.pop("partial_rotary_factor",
                           cfg.number("partial_rotary_factor", partial or 1.0))
    if fraction != 1.0 and partial is None:
        raise cfg.refuse("partial_rotary_factor", f"{fraction}: rope on part of each head",
                         "explorer's rope rotates the whole head (1.0)")
    cfg.choose("positional", "rope", "rope_theta")
    if fraction != 1.0:
        cfg.set("components.positional.fraction", float(fraction), "partial_rotary_factor")
    cfg.set("components.positional.theta", float(theta), "rope_theta")
    if kind not in ROPE_TYPES:
        raise cfg.refuse(field, f"rope_type {kind!r} has no explorer equivalent",
                         f"explorer's rope computes {', '.join(ROPE_TYPES)}")
    unknown = [key for key in scaling if key not in ROPE_TYPES[kind]]
    if unknown:
        raise cfg.refuse(field, f"{unknown[0]} is not a {kind} setting explorer knows",
                         f"{kind} takes {', '.join(ROPE_TYPES[kind]) or 'nothing'}")
    if kind == "default":
        return {}
    cfg.set("components.positional.scaling", kind, field)
    for key, target in ROPE_TYPES[kind].items():
        if target is None:
            continue
        name, default = target
        value = scaling.get(key, default)
        if value is ...:
            raise cfg.refuse(field, f"{kind} needs {key}")
        cfg.set(f"components.positional.{name}", value, field)
    if kind == "yarn":
        _yarn(cfg, scaling, field)
    return {"rope_type": kind, **scaling}


def yarn_mscale(factor, mscale=1.0):
    """YaRN's attention temperature: 0.1 * mscale * ln(factor) + 1 (1 for no extension)."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def _yarn(cfg, scaling, field):
    """YaRN's factor (max_position_embeddings / original when absent) and attention factor, as
    transformers derives them."""
    original = scaling["original_max_position_embeddings"]
    factor = scaling.get("factor") or cfg.doc["model"]["context_length"] / original
    cfg.set("components.positional.factor", float(factor), field)
    attention = scaling.get("attention_factor")
    if attention is None:
        mscale, all_dims = scaling.get("mscale"), scaling.get("mscale_all_dim")
        attention = (yarn_mscale(factor, mscale) / yarn_mscale(factor, all_dims)
                     if mscale and all_dims else yarn_mscale(factor))
    cfg.set("components.positional.attention_factor", float(attention), field)
