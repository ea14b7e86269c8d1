"""Key/value caches for incremental decoding: each new token attends to stored keys and values.

One :class:`KVCache` per attention layer holds that layer's keys and values at their own head
count, ``(B, n_kv_heads, slots, head_dim)``, so grouped-query and multi-query attention cache
only their shared heads. Keys are stored after ``pos.rotate`` (RoPE acts at the absolute
position a token had when it was computed), together with their absolute positions, which is
all ``causal_mask`` and ``pos.bias`` (ALiBi) need. A :class:`ModelCache` holds one per block and
the number of tokens the model has seen, from which ``GPTModel.forward`` numbers the next ones.
"""

import torch

# The position an empty slot reports: after every query, so causal_mask hides it.
EMPTY = torch.iinfo(torch.long).max


class KVCache:
    """The keys and values one attention layer has computed so far, pre-allocated.

    Without a sliding window the buffers hold ``max_len`` positions, filled left to right. With
    ``window`` > 0 a query never looks further back than ``window`` - 1 tokens, so the buffers are
    a ring of ``min(window, max_len)`` slots: position ``p`` lives in slot ``p % slots`` (a ring
    of ``window`` slots takes any number of tokens; a shorter one, ``max_len``). The
    buffers are allocated on the first :meth:`update`, with the batch size, dtype and device of
    the keys it is given.
    """

    def __init__(self, max_len):
        self.max_len = max_len
        self.length = 0  # tokens stored so far = the absolute position of the next one
        self.keys = self.values = self.positions = None

    def update(self, keys, values, positions, window=0):
        """Store ``keys``/``values`` (B, nkv, T, hs) of the tokens at ``positions`` (T,).

        ``positions`` must continue where the cache stopped (``length .. length + T - 1``).
        Returns what those tokens' queries may attend to: keys and values (B, nkv, Tk, hs) and
        the keys' absolute positions (Tk,), to mask with ``causal_mask(positions, k_positions,
        window)``. Empty ring slots report a position after every query, so the mask hides them.
        """
        b, nkv, t, hs = keys.shape
        if self.keys is None:
            slots = min(window, self.max_len) if window else self.max_len
            self.keys = keys.new_zeros(b, nkv, slots, hs)  # (B, nkv, slots, hs)
            self.values = values.new_zeros(b, nkv, slots, values.shape[-1])
            self.positions = torch.full((slots,), EMPTY, dtype=torch.long, device=keys.device)
        start, end = self.length, self.length + t
        slots = self.keys.shape[2]
        if end > self.max_len and slots < (window or end):  # a ring of `window` slots never fills
            raise ValueError(f"KV cache holds {self.max_len} positions: cannot add {t} tokens "
                             f"after {start}")
        if window:
            return self._update_ring(keys, values, positions, start, end)
        self.keys[:, :, start:end] = keys
        self.values[:, :, start:end] = values
        self.positions[start:end] = positions
        self.length = end
        if start == 0:  # the same tensor: attention may then use the plain causal kernel
            return keys, values, positions
        return self.keys[:, :, :end], self.values[:, :, :end], self.positions[:end]

    def _update_ring(self, keys, values, positions, start, end):
        # The new queries see the ring as it was plus the new tokens; only then do the newest
        # tokens overwrite the oldest slots (a query early in a long chunk still needs them).
        k_all = torch.cat((self.keys, keys), dim=2)  # (B, nkv, slots + T, hs)
        v_all = torch.cat((self.values, values), dim=2)
        p_all = torch.cat((self.positions, positions))  # (slots + T,)
        slots = self.keys.shape[2]
        keep = min(end - start, slots)
        where = torch.arange(end - keep, end, device=keys.device) % slots  # (keep,)
        self.keys.index_copy_(2, where, keys[:, :, -keep:])
        self.values.index_copy_(2, where, values[:, :, -keep:])
        self.positions.index_copy_(0, where, positions[-keep:])
        self.length = end
        return k_all, v_all, p_all


class RecurrentState:
    """What one recurrent token mixer (linear attention, a delta rule, Mamba) carries between
    decoding steps instead of keys and values: a few tensors whose size does not grow with the
    tokens seen (a convolution's last inputs, a (B, heads, d_k, d_v) state matrix).

    The mixer creates it in ``new_cache(max_len)`` and, given it in ``forward(..., cache=state)``,
    reads ``state.tensors`` (empty on the first call: start from zeros), stores the state after
    this call's tokens there, and calls ``state.advance(T)``. ``length`` counts the tokens seen,
    which :meth:`ModelCache.advance` checks as it does a KV cache's.
    """

    def __init__(self, max_len):
        self.max_len = max_len
        self.length = 0
        self.tensors = {}

    def advance(self, t):
        self.length += t


class ModelCache:
    """One :class:`KVCache` per block, and the number of tokens the model has been given.

    Pass it to ``model(in_idx, cache=cache)`` repeatedly: the first call may be a whole prompt,
    each later call the next token(s). ``max_len`` bounds the tokens it can hold (at most the
    model's context_length).
    """

    def __init__(self, n_layers, max_len, layers=None):
        self.max_len = max_len
        self.offset = 0
        self.layers = layers if layers is not None else [KVCache(max_len) for _ in range(n_layers)]

    @classmethod
    def for_model(cls, model, max_len):
        """One cache per built block of ``model``: what the block's token mixer asks for with
        ``new_cache(max_len)`` (a recurrent mixer's :class:`RecurrentState`), else a
        :class:`KVCache`. Mixers are found by their ``attention`` kind tag."""
        from explorer.model.kinds import sublayers

        layers = []
        for block in model.trf_blocks:
            mixers = [m for _, kind, m in sublayers(block) if kind == "attention"]
            make = getattr(mixers[0], "new_cache", None) if mixers else None
            layers.append(make(max_len) if callable(make) else KVCache(max_len))
        return cls(len(layers), max_len, layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def advance(self, t):
        """Count ``t`` more tokens once every layer has stored them; a layer that did not is a
        block or attention that ignored its ``cache`` argument."""
        self.offset += t
        for i, layer in enumerate(self.layers):
            if layer.length != self.offset:
                raise RuntimeError(f"block {i} did not update its KV cache ({layer.length} tokens "
                                   f"stored, {self.offset} expected): its residual or attention "
                                   "forward ignores the cache argument")


# What an attention exposes for the KV-cache figures (explorer.model.contracts).
LAYOUT_ATTRIBUTES = ("n_kv_heads", "head_dim", "window")


def cache_layout(model):
    """What each attention caches, read from the modules' contract attributes (any device).

    A list with one entry per attention module (one per block, normally): ``layer`` (the block
    index), ``module`` (its name), ``n_kv_heads``, ``head_dim``, ``window`` (0: none) and
    ``values_per_token``, the elements it caches per token: ``kv_values_per_token`` if the
    module defines it (a latent attention caches fewer), else keys and values,
    ``2 * n_kv_heads * head_dim``, and ``state_values_per_sequence``, the elements a recurrent
    mixer keeps per sequence whatever its length (0 for a softmax attention). Attention modules
    are found by their ``attention`` kind tag, whatever a block calls them.
    """
    from explorer.errors import PluginError
    from explorer.model.kinds import sublayers
    from explorer.model.stack import layer_blocks

    layout = []
    for i, block in enumerate(layer_blocks(model)):  # a compact model: each layer's copy
        for name, kind, module in sublayers(block):
            if kind != "attention":
                continue
            where = f"trf_blocks.{i}.{name}"
            missing = [a for a in LAYOUT_ATTRIBUTES if not isinstance(getattr(module, a, None), int)]
            if missing:
                raise PluginError(f"{where} ({type(module).__name__}) does not expose "
                                  f"{', '.join(missing)} as an int: an attention exposes "
                                  f"{', '.join(LAYOUT_ATTRIBUTES)} (explorer.model.contracts)")
            values = getattr(module, "kv_values_per_token", None)
            if values is None:
                values = 2 * module.n_kv_heads * module.head_dim  # keys and values
            layout.append({"layer": i, "module": where, "n_kv_heads": module.n_kv_heads,
                           "head_dim": module.head_dim, "window": module.window,
                           "values_per_token": values,
                           # contracts.state_values_per_sequence (which imports this module)
                           "state_values_per_sequence":
                               getattr(module, "state_values_per_sequence", None) or 0})
    return layout
