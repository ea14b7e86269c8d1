"""Measuring the activations autograd saves for backward, exactly, on any device.

One training forward (model + cross-entropy loss) runs under
``torch.autograd.graph.saved_tensors_hooks`` and the bytes of every storage autograd keeps for
backward are summed, each storage once. Parameters and buffers that autograd saves (a Linear
saves its weight) are weights, not activations, and are left out. On fake tensors (torch's
FakeTensorMode) or the meta device this allocates nothing, so any size can be measured.

The memory analysis reports these figures; the core uses them to predict the peak memory of the
analyses that train, and refuses before allocating what would not fit (explorer.measure.resources).
"""

import torch
from torch import nn
from torch.nn import functional as F

from explorer.model.stack import per_layer


def saved_activation_bytes(model, batch_size, seq_len):
    """Bytes autograd saves for backward in one training forward + cross-entropy, by region.

    Each storage is counted once, in the region that first saves it (its full size: a saved
    view keeps its whole storage alive). Storages of parameters and buffers are not counted.
    Works on meta and fake tensors too, which allocate no memory. The model is put in training
    mode (dropout masks are part of what training saves) and restored. On a compact model
    (explorer.model.stack) each layer gets the measurement of a built block configured like it that
    ran after a block configured like its predecessor: the figures of the full model.
    """
    device = next(model.parameters()).device
    # Storage identity: ``_cdata`` is the StorageImpl pointer, which also tells meta storages apart.
    weights = {t.untyped_storage()._cdata for t in (*model.parameters(), *model.buffers())}
    seen, excluded = set(), set()
    by_region = {"embedding": 0}
    weights_by_region = {}  # region -> weight storages it was the first to save
    region = ["embedding"]

    def pack(t):
        storage = t.untyped_storage()
        key = storage._cdata
        if key in weights:
            if key not in excluded:
                excluded.add(key)
                weights_by_region[region[0]] = weights_by_region.get(region[0], 0) + 1
        elif key not in seen:
            seen.add(key)
            by_region[region[0]] = by_region.get(region[0], 0) + storage.nbytes()
        return t

    def enter(name):
        def hook(module, args):
            region[0] = name
        return hook

    def leave(module, args, output):
        region[0] = "head"  # what follows the last block: final norm and output head

    handles = []
    for i, block in enumerate(model.trf_blocks):
        by_region[f"block {i}"] = 0
        handles.append(block.register_forward_pre_hook(enter(f"block {i}")))
        handles.append(block.register_forward_hook(leave))
    by_region["head"] = by_region["loss"] = 0
    inputs = torch.zeros(batch_size, seq_len, dtype=torch.long, device=device)
    targets = torch.zeros(batch_size, seq_len, dtype=torch.long, device=device)
    was_training = model.training
    model.train()
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logits = model(inputs)  # (B, T, V)
            region[0] = "loss"
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        del logits, loss  # frees the graph and what it saved
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    built = range(len(model.trf_blocks))
    blocks = per_layer(model, [by_region[f"block {i}"] for i in built])
    outside = ("embedding", "head", "loss")
    block_weights = per_layer(model, [weights_by_region.get(f"block {i}", 0) for i in built])
    return {
        "total": by_region["embedding"] + sum(blocks) + by_region["head"] + by_region["loss"],
        "embedding": by_region["embedding"],
        "blocks": sum(blocks),
        "per_block": blocks,
        "head": by_region["head"],
        "loss": by_region["loss"],
        "weight_storages_saved": sum(block_weights)
        + sum(weights_by_region.get(r, 0) for r in outside),
    }


def cast_floating(model, dtype):
    """``model.to(dtype)`` by reassignment, in place (fake tensors cannot be swapped in place);
    tied parameters stay tied. Returns ``model``."""
    done = {}
    for module in model.modules():
        for store, wrap in ((module._parameters, nn.Parameter), (module._buffers, None)):
            for name, t in store.items():
                if t is None or not t.is_floating_point() or t.dtype == dtype:
                    continue
                if id(t) not in done:
                    cast = t.detach().to(dtype)
                    done[id(t)] = wrap(cast) if wrap else cast
                store[name] = done[id(t)]
    return model
