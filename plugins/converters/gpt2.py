"""GPT-2 configs (``GPT2LMHeadModel``) -> the book's components: layernorm, an MLP, mha with
q/k/v biases, learned positions, the head tied to the token embedding."""

from . import common


def convert(cfg):
    common.sizes(cfg, emb="n_embd", heads="n_head", layers="n_layer", context="n_positions",
                 context_default=1024)
    cfg.choose("norm", "layernorm")
    cfg.set("components.norm.eps", cfg.number("layer_norm_epsilon", 1e-5), "layer_norm_epsilon")
    common.activation(cfg, "activation_function", "gelu_new")
    emb = cfg.doc["model"]["emb_dim"]
    inner = cfg.integer("n_inner", None, minimum=1) or 4 * emb
    if inner % emb:
        raise cfg.refuse("n_inner", f"{inner} is not a multiple of n_embd {emb}",
                         "explorer's mlp has expansion * emb_dim hidden units")
    cfg.choose("ffn", "mlp")
    cfg.set("components.ffn.expansion", inner // emb, "n_inner")
    cfg.choose("attention", "mha")
    cfg.set("model.qkv_bias", True)
    cfg.choose("positional", "learned")
    cfg.set("components.residual", "pre_norm")
    common.tying(cfg, True)
    for field, place in (("embd_pdrop", "embedding"), ("attn_pdrop", "attention"),
                         ("resid_pdrop", "residual")):
        cfg.set(f"model.dropout.{place}", cfg.number(field, 0.1), field)
    for field, computes in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                            ("add_cross_attention", False)):
        if cfg.flag(field, computes) != computes:
            raise cfg.refuse(field, f"{not computes}: explorer's mha computes {field}: "
                             f"{str(computes).lower()} only")
    cfg.ignore("reorder_and_upcast_attn")  # how the scores are computed, not what
