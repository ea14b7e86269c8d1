"""The book's checkpoints: ``torch.save(model.state_dict(), "model.pth")`` of its GPTModel.

Explorer's model keeps the book's names (``tok_emb``, ``trf_blocks.{i}.att.W_query``, ...), so
the tensors map to themselves; a state_dict of any explorer model saved with ``torch.save`` reads
the same way. The wrappers' prefixes are dropped, and the book's causal-mask buffers are left to
the model, which rebuilds its own.
"""

import re

WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile, DistributedDataParallel
MASK = re.compile(r"trf_blocks\.\d+\.att\.mask")  # the book's MultiHeadAttention buffer


def strip_wrappers(name):
    for prefix in WRAPPER_PREFIXES:
        name = name.removeprefix(prefix)
    return name


def detect(ckpt):
    names = [strip_wrappers(name) for name in ckpt.names]
    return any(name == "tok_emb.weight" or name.startswith("trf_blocks.") for name in names)


def to_model(ckpt, model, spec):
    return {strip_wrappers(src): (src, tensor) for src, tensor in ckpt.tensors.items()
            if not MASK.fullmatch(strip_wrappers(src))}
