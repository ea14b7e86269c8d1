"""Whether a checkpoint's tensors fit a model: the first one that does not, as a Mismatch.

Only names and shapes are compared here (``shapes`` maps the model's names to the checkpoint's
shapes), so the same comparison runs against models built on the meta device when
:mod:`explorer.weights.hints` looks for the spec change that would make a tensor fit.
"""

import re

from .diagnostics import Mismatch

BLOCKS = "trf_blocks"  # explorer.model.gpt.GPTModel's stack of blocks
_BLOCK = re.compile(rf"{BLOCKS}\.(\d+)\.")


class Layout:
    """The tensors a model expects: parameters (each once), persistent buffers, and aliases.

    A tied parameter appears once under its first name; its other names are ``aliases``
    (``alias -> first name``), which a checkpoint need not hold.
    """

    def __init__(self, model):
        self.params = {name: tuple(p.shape) for name, p in model.named_parameters()}
        first, self.aliases = {}, {}
        for name, p in model.named_parameters(remove_duplicate=False):
            if first.setdefault(id(p), name) != name:
                self.aliases[name] = first[id(p)]
        state = model.state_dict(keep_vars=True)
        self.order = [name for name in state if name not in self.aliases]  # the model's order
        self.buffers = {name: tuple(t.shape) for name, t in state.items()
                        if name not in self.params and name not in self.aliases}

    def shape(self, name):
        return self.params.get(name, self.buffers.get(name))

    def fits(self, shapes, name):
        """Whether the checkpoint's ``name`` (in ``shapes``, or absent from it) fits this model."""
        if name in shapes:
            return self.shape(name) == shapes[name]
        return name not in self.params

    def misfits(self, shapes):
        """How many tensors do not fit: missing parameters, unknown names, wrong shapes."""
        missing = sum(name not in shapes for name in self.params)
        return missing + sum(self.shape(name) != shape for name, shape in shapes.items())


def first_mismatch(layout, shapes, origin, n_layers):
    """The first tensor that does not fit, as a :class:`Mismatch` (no spec key yet), or None.

    Checked in the order a reader looks for them: the number of blocks, then every tensor the
    model expects (in the model's order), then the checkpoint's tensors the model lacks.
    """
    blocks = _check_blocks(layout, shapes, origin, n_layers)
    if blocks:
        return blocks
    for name in layout.order:
        have = shapes.get(name)
        if have is None:
            if name in layout.params:
                return Mismatch("missing", tensor=name, want=layout.params[name])
            continue  # a buffer: rebuilt from the spec (causal masks, rotary tables)
        if have != layout.shape(name):
            return Mismatch("shape", tensor=name, origin=origin.get(name, ""), have=have,
                            want=layout.shape(name))
    extra = [name for name in shapes if layout.shape(name) is None]
    for name in in_model_order(extra, layout.order):
        note = f"separate from {layout.aliases[name]}" if name in layout.aliases else ""
        return Mismatch("unexpected", tensor=name, origin=origin.get(name, ""), note=note)
    return None


def block_index(name):
    """The index of the block that holds ``name``, or None outside the blocks."""
    m = _BLOCK.match(name)
    return int(m.group(1)) if m else None


def n_blocks(names):
    found = [i for i in map(block_index, names) if i is not None]
    return max(found) + 1 if found else None


def _block0(name):
    """``trf_blocks.7.x.y`` -> ``trf_blocks.0.x.y``: the same tensor in the first block."""
    return _BLOCK.sub(f"{BLOCKS}.0.", name, count=1)


def in_model_order(names, model_names):
    """Sort checkpoint-only ``names`` as the model would list them: by block, then beside the
    model tensor that shares the longest prefix (a bias by its weight)."""
    first = {}
    for i, name in enumerate(model_names):
        parts = _block0(name).split(".")
        for n in range(1, len(parts)):
            first.setdefault(".".join(parts[:n]), i)

    def order(name):
        parts = _block0(name).split(".")
        pos = next((first[".".join(parts[:n])] for n in range(len(parts) - 1, 0, -1)
                    if ".".join(parts[:n]) in first), len(model_names))
        block = block_index(name)
        return (-1 if block is None else block, pos)

    return sorted(names, key=order)


def _check_blocks(layout, shapes, origin, n):
    """A checkpoint with another number of blocks: name the first tensor past the shorter stack."""
    expected = list(layout.params)
    n_ck = n_blocks(shapes)
    if n_ck is None or n_blocks(expected) is None or n_ck == n:
        return None
    fix = {"key": "model.n_layers", "current": n, "value": n_ck}
    if n_ck > n:
        extra = [k for k in in_model_order(shapes, layout.order) if k.startswith(f"{BLOCKS}.{n}.")]
        block_buffers = {_block0(b) for b in layout.buffers}
        name = next((k for k in extra if _block0(k) not in block_buffers), extra[0])
        return Mismatch("unexpected", tensor=name, origin=origin.get(name, ""), **fix)
    name = next((k for k in expected if k.startswith(f"{BLOCKS}.{n_ck}.")), f"{BLOCKS}.{n_ck}")
    return Mismatch("missing", tensor=name, note=f"it has {n_ck} blocks", **fix)
