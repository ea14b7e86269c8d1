"""The spec change that makes a checkpoint's tensor fit: found by trying, not by knowing names.

The core knows no component's tensors, so it asks the registry instead: for the component that
holds the tensor (the module's ``explorer_kind`` tag), then the model's sizes, then the other
components, each candidate value is applied to the spec and the model rebuilt on the meta device
(no memory, milliseconds). A candidate counts when the tensor then fits and fewer tensors misfit
overall; the best one is the hint. Candidate values come from the component's declared Params
(booleans flipped, choices, whole numbers read off the checkpoint's shape) and the other
registered components of the same kind.
"""

import json
from dataclasses import dataclass
from typing import Any

import torch

from .fit import Layout, block_index

MODEL_SIZES = ("vocab_size", "context_length", "emb_dim", "n_heads")


@dataclass(frozen=True)
class Hint:
    key: str  # the spec key to change
    current: Any  # its value now
    value: Any  # the value under which the tensor fits
    note: str = ""  # what the change means for the tensor ("tied to tok_emb.weight")


def kind_of(model, name):
    """The kind tag (``explorer_kind``) of the innermost tagged module that holds ``name``."""
    module, kind = model, getattr(model, "explorer_kind", None)
    for part in name.split(".")[:-1]:
        module = getattr(module, part, None)  # Sequential children are attributes "0", "1", ...
        if not isinstance(module, torch.nn.Module):
            break
        kind = getattr(module, "explorer_kind", kind)
    return kind


def suggest(spec, model, shapes, name):
    """The :class:`Hint` under which the checkpoint's ``name`` fits and fewer tensors misfit.

    Candidates are built only as deep as the block that holds ``name`` and compared on the
    tensors outside the blocks and in those blocks: as exact for that tensor, and a 48-block
    model costs no more than a 1-block one.
    """
    if spec.plugin_manager is None:
        return None
    with torch.random.fork_rng(devices=[]):  # building seeds torch's RNG; keep the caller's
        return _search(spec, spec.plugin_manager.registry(), kind_of(model, name), shapes, name)


def _search(spec, registry, kind, shapes, name):
    depth = min(spec.model.n_layers, (block_index(name) or 0) + 1)
    shapes = {n: s for n, s in shapes.items() if (block_index(n) or 0) < depth}
    base = _layout_with(spec, depth)
    if base is None:
        return None
    baseline, best = base.misfits(shapes), None
    for key, current, value in _unique(_candidates(spec, registry, kind, shapes.get(name))):
        candidate = _layout_with(spec, depth, f"{key}={json.dumps(value)}")
        if candidate is None or not candidate.fits(shapes, name):
            continue
        misfits = candidate.misfits(shapes)
        if misfits < baseline and (best is None or misfits < best[0]):
            note = f"tied to {candidate.aliases[name]}" if name in candidate.aliases else ""
            best = (misfits, Hint(key, current, value, note))
            if misfits == 0:
                break
    return best[1] if best else None


def _layout_with(spec, depth, *overrides):
    """The Layout of ``spec`` ``depth`` blocks deep with ``overrides``, built on the meta
    device, or None if the spec or a factory refuses them."""
    from ..model.gpt import build_model
    from ..spec.loading import spec_from_dict

    try:
        changed = spec_from_dict(spec.to_dict(), source=spec.source, plugins=spec.plugin_manager,
                                 overrides=[f"model.n_layers={depth}", *overrides])
        return Layout(build_model(changed, device="meta"))
    except Exception:  # a value the spec or a factory refuses is simply not the answer
        return None


def _unique(candidates):
    seen = set()
    for key, current, value in candidates:
        if (key, repr(value)) not in seen:
            seen.add((key, repr(value)))
            yield key, current, value


def _candidates(spec, registry, kind, shape):
    """(spec key, value now, value to try): the tensor's own component first, then the model's
    sizes, then every other component."""
    sizes = _sizes(shape or (), spec.model)
    own = [kind] if kind in spec.components else []
    for k in own:
        yield from _component_candidates(spec, registry, k, sizes)
    yield "model.qkv_bias", spec.model.qkv_bias, not spec.model.qkv_bias
    for key in MODEL_SIZES:
        now = getattr(spec.model, key)
        yield from ((f"model.{key}", now, v) for v in sizes if v != now)
    for k in spec.components:
        if k not in own:
            yield from _component_candidates(spec, registry, k, sizes)


def _component_candidates(spec, registry, kind, sizes):
    choice = spec.components[kind]
    component = registry.components.get((kind, choice.name))
    for param in component.params if component else ():
        now = choice.params.get(param.name)
        if param.numerics_only:
            continue  # the same weights whatever it is
        if param.type is bool:
            values = [not now]
        elif param.choices:
            values = list(param.choices)
        elif param.type is int:
            values = [*sizes, param.default]
        else:
            continue
        yield from ((f"components.{kind}.{param.name}", now, v) for v in values if v != now)
    for name in registry.names(kind):
        if name != choice.name:
            yield f"components.{kind}", choice.name, name


def _sizes(shape, cfg):
    """Whole numbers a size could be, read off a checkpoint tensor's shape: each dimension, and
    its ratio to the width and the head size (an expansion, a head count)."""
    out = []
    for d in shape:
        out.append(d)
        out += [d // unit for unit in (cfg.emb_dim, cfg.head_dim) if d % unit == 0]
        if d and cfg.emb_dim % d == 0:
            out.append(cfg.emb_dim // d)
    return [v for v in dict.fromkeys(out) if v >= 1]
