"""The linear-time token mixers' components: registered under the ``attention`` kind (they
take attention's place in a block, with its forward signature), declared here without importing
torch; the modules are linear.py and deltanet.py."""

from explorer import Component, Param, ParamError

CHUNK = Param("chunk_size", int, 64, "tokens per chunk of the parallel form used for training "
              "and prompts (how it is computed, not what: any size gives the same outputs)",
              min=1, numerics_only=True)


def feature_map_can_normalise(config, params):
    """Dividing by phi(q) . sum phi(k) needs a positive feature map."""
    if params["normalise"] and params["feature_map"] == "identity":
        raise ParamError("normalise", "the identity feature map can make the normaliser zero "
                         "or negative", "normalise false, or feature_map elu")


def key_heads_divide_heads(config, params):
    """Each key head serves n_heads / n_key_heads value heads."""
    n_heads = params["n_heads"] or config.n_heads
    n_key = params["n_key_heads"] or n_heads
    if n_heads % n_key:
        divisors = [k for k in range(1, n_heads + 1) if n_heads % k == 0]
        raise ParamError("n_key_heads", f"{n_key} key heads cannot be shared by {n_heads} value "
                         "heads", f"a divisor of {n_heads}: {', '.join(map(str, divisors))}")


def mixer_components():
    return [
        Component(
            kind="attention", name="linear_attention",
            factory="explorer.plugins.attention.linear:LinearAttention",
            params=(
                Param("n_heads", int, 0, "heads; 0 = the model's n_heads", min=0),
                Param("head_dim", int, 0, "size of each head's queries, keys and values; 0 = "
                      "emb_dim / heads", min=0),
                Param("feature_map", str, "elu", "phi applied to queries and keys: elu (elu + 1, "
                      "Katharopoulos et al.) or identity (RetNet)", choices=("elu", "identity")),
                Param("decay", bool, False, "RetNet's fixed per-head decay gamma_h = 1 - "
                      "2^(-5 - h): older tokens fade geometrically"),
                Param("normalise", bool, True, "divide by the (decayed) sum of phi(q) . phi(k), "
                      "as Katharopoulos et al.; needs a positive feature map"),
                CHUNK,
                Param("out_bias", bool, False, "a bias on the output projection"),
            ),
            check=feature_map_can_normalise,
            description="Causal linear attention: a feature map instead of softmax, a "
                        "(head_dim x head_dim) state per head instead of a KV cache; optional "
                        "RetNet decay.",
        ),
        Component(
            kind="attention", name="gated_deltanet",
            factory="explorer.plugins.attention.deltanet:GatedDeltaNet",
            params=(
                Param("n_heads", int, 0, "value heads (each with its own state and decay); 0 = "
                      "the model's n_heads (Qwen3-Next 80B: 32)", min=0),
                Param("n_key_heads", int, 0, "query/key heads, each shared by n_heads / "
                      "n_key_heads value heads; 0 = n_heads (Qwen3-Next 80B: 16)", min=0),
                Param("key_head_dim", int, 0, "size of each query/key head; 0 = emb_dim / "
                      "n_heads (Qwen3-Next: 128)", min=0),
                Param("value_head_dim", int, 0, "size of each value head; 0 = key_head_dim "
                      "(Qwen3-Next: 128)", min=0),
                Param("conv_kernel", int, 4, "width of the causal depthwise convolution over q, "
                      "k and v (Qwen3-Next: 4)", min=1),
                CHUNK,
                Param("norm_eps", float, 1e-6, "epsilon of the gated RMSNorm on the output",
                      min=0, exclusive_min=True),
            ),
            check=key_heads_divide_heads,
            description="Gated DeltaNet (Qwen3-Next's linear attention): short causal conv, "
                        "L2-normalised q/k, the gated delta rule, gated RMSNorm output.",
        ),
    ]
