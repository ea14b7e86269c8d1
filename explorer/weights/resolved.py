"""Component parameters as the built model has them, not as the spec writes them.

A parameter may have a default that means "derive it": glu's ``hidden: 0`` is Llama's rule
(2048 at width 768), gqa's ``head_dim: 0`` is emb_dim / n_heads. Two specs that write the value
and its derivation build the same model, so a check of a checkpoint's config against a spec
compares what each builds. A component's module that keeps a parameter as an attribute of the
same name and type (``self.hidden = 2048``; null for a parameter whose default is null) gives the
resolved value; any other parameter is taken as the spec writes it. The model is built on the
meta device and compact (one block per distinct layer configuration), so a model of any size
costs milliseconds.
"""

import torch

PLAIN = (bool, int, float, str)


def resolved_layers(spec):
    """Per layer, ``{kind: {param: value}}`` for every component choice of that layer: the
    module's attribute of the parameter's name where the layer's block holds a module of that
    kind with one of the parameter's type, else the spec's value."""
    from ..model.gpt import build_model
    from ..model.stack import layer_blocks

    with torch.random.fork_rng(devices=[]):  # building seeds torch's RNG; keep the caller's
        model = build_model(spec, device="meta", compact=True)
    out = []
    for choices, block in zip(spec.layer_components(), layer_blocks(model)):
        modules = _outermost_by_kind(block)
        out.append({kind: {name: _attribute(modules.get(kind), name, value)
                           for name, value in choice.params.items()}
                    for kind, choice in choices.items()})
    return out


def _outermost_by_kind(block):
    """``{kind: module}``: the least deep module tagged with each kind (a block's ``ff``, not
    the experts inside it)."""
    found = {}
    for name, module in block.named_modules():
        kind = getattr(module, "explorer_kind", None)
        depth = name.count(".") + bool(name)
        if kind is not None and (kind not in found or depth < found[kind][0]):
            found[kind] = (depth, module)
    return {kind: module for kind, (_, module) in found.items()}


def _attribute(module, name, value):
    """The module's ``name`` if it is a plain value of ``value``'s type (moe's ``router`` is the
    router's Linear, its ``score_bias`` a buffer or None: the spec's value stands)."""
    have = getattr(module, name, None) if module is not None else None
    if isinstance(have, PLAIN) and (value is None or type(have) is type(value)):
        return have
    return value
