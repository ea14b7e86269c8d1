"""Built-in attention components (implementations in layers/attention.py)."""

from explorer import Component, Param, ParamError, hookimpl

_COMMON = (
    Param("impl", str, "auto", "auto: sdpa unless attention dropout is active (training with "
          "a rate > 0), then manual, so training is the book's bit for bit; manual: the book's "
          "masked softmax; sdpa: torch's scaled_dot_product_attention",
          choices=("auto", "manual", "sdpa")),
    Param("window", int, 0, "sliding window: each token sees itself and the window - 1 tokens "
          "before it; 0 = the whole context", min=0),
    Param("qk_norm", bool, False, "normalise queries and keys per head with the spec's norm "
          "(OLMo-2, Gemma 3)"),
    Param("out_bias", bool, True, "a bias on the output projection (GPT-2: yes; Llama: no)"),
)



def kv_heads_divide_heads(config, params):
    """Grouped-query attention shares each key/value head by n_heads / n_kv_heads query heads."""
    n_heads, n_kv_heads = config.n_heads, params["n_kv_heads"]
    if n_heads % n_kv_heads:
        divisors = [k for k in range(1, n_heads + 1) if n_heads % k == 0]
        raise ParamError("n_kv_heads", f"{n_kv_heads} key/value heads cannot be shared by "
                         f"n_heads {n_heads} query heads",
                         f"a divisor of n_heads: {', '.join(map(str, divisors))}")


@hookimpl
def explorer_components():
    return [
        Component(
            kind="attention", name="mha", factory="explorer.plugins.layers.attention:MultiHeadAttention",
            params=_COMMON,
            description="Causal multi-head attention, the book's chapter-3 design "
                        "(W_query, W_key, W_value, out_proj).",
        ),
        Component(
            kind="attention", name="gqa",
            factory="explorer.plugins.layers.attention:GroupedQueryAttention",
            params=(Param("n_kv_heads", int, 1, "key/value heads, each shared by n_heads / "
                          "n_kv_heads query heads: 1 = multi-query, n_heads = multi-head", min=1),
                    *_COMMON),
            check=kv_heads_divide_heads,
            description="Causal grouped-query attention (Llama 2/3, Mistral); multi-query "
                        "with n_kv_heads 1.",
        ),
    ]
