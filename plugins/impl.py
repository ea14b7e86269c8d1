"""How an ``impl`` parameter resolves: which kernels compute a layer's (unchanged) function.

``auto`` (the default): the fastest kernels that compute the same function, in training too.
``book``: the book's written-out arithmetic in training, so training-mode outputs (dropout
masks included) are the book's bit for bit, and the fused kernels in eval. ``manual``: the
book's arithmetic always. ``fused`` (``sdpa`` for attention): torch's kernels always.
"""


def uses_kernel(impl, training):
    """Whether a layer calls torch's fused kernel now (``book``: only in eval)."""
    return impl in ("auto", "fused") or (impl == "book" and not training)


def uses_sdpa(impl, dropout_active, softcap):
    """Whether attention calls ``scaled_dot_product_attention`` now: ``auto`` unless the scores
    are soft-capped (the kernel cannot cap), ``book`` also not while attention dropout is
    active (the masks are the book's only on the book's path), ``sdpa`` always."""
    if impl == "auto":
        return not softcap
    if impl == "book":
        return not (dropout_active or softcap)
    return impl == "sdpa"
