"""Loading a checkpoint into a model: read, map through its format, check, copy.

:func:`load_model` builds the spec's model and loads into it (model assembly,
:func:`explorer.model.gpt.build_model`, reads no file); :func:`load_weights` loads into a model
already built.

Any disagreement between checkpoint and spec is one ExplorerError naming the first tensor (or
config value) that does not fit and the spec key to change; nothing is copied until all agree.
"""

from dataclasses import replace

import torch

from ..errors import ExplorerError
from ..model.gpt import build_model
from . import formats
from .diagnostics import Mismatch, mismatch_error
from .files import read_file, weight_files
from .fit import Layout, first_mismatch
from .hints import kind_of, suggest
from .native import is_native, saved_spec, spec_mismatches


def load_model(spec, weights, seed=None, device=None, fork_rng=True):
    """The model ``spec`` describes with the checkpoint ``weights`` loaded (a Hugging Face file
    or directory, a book ``model.pth``, an explorer checkpoint: :func:`load_weights`), or with
    the initial weights of ``seed`` when ``weights`` is None. ``seed``, ``device``, ``fork_rng``:
    as :func:`explorer.build_model`.

    A path that holds no checkpoint is refused before the model is built.
    """
    if weights is not None:
        weight_files(weights)
    model = build_model(spec, seed=seed, device=device, fork_rng=fork_rng)
    return model if weights is None else load_weights(model, spec, weights)


def load_weights(model, spec, path):
    """Load the checkpoint at ``path`` into ``model`` (built from ``spec``), in place.

    The format is detected from the file's tensor names and metadata (explorer's own
    checkpoints, or a registered checkpoint format). Any disagreement between checkpoint and
    spec raises one :class:`explorer.ExplorerError` naming the first tensor that does not fit
    and the spec key to change. Returns ``model``.
    """
    if any(p.is_meta for p in model.parameters()):
        raise ExplorerError(f"{path}: cannot load weights into a model on the meta device")
    ckpt = read_file(path)
    registry = formats.registry_of(spec)
    fmt, tensors, origin = _mapped(registry, ckpt, model, spec)
    layout = Layout(model)
    _drop_tied_copies(tensors, layout)
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    m = first_mismatch(layout, shapes, origin, spec.model.n_layers)
    if m is not None:
        raise mismatch_error(ckpt.path, _with_fix(m, spec, model, shapes))
    found = formats.mismatches(registry, fmt, ckpt, spec) if fmt is not None else []
    if found:
        raise mismatch_error(ckpt.path, found[0])

    state = model.state_dict()
    with torch.no_grad():
        for name, tensor in tensors.items():
            state[name].copy_(tensor)  # into the model's own storage, in its dtype and device
    return model


def _mapped(registry, ckpt, model, spec):
    """(format or None for explorer's own, tensors under the model's names, their names in the
    file where those differ); refuses a spec the checkpoint cannot hold."""
    if is_native(ckpt):
        # The saved spec says exactly what differs; it comes before any tensor it explains.
        saved = spec_mismatches(saved_spec(ckpt.metadata, ckpt.path), spec)
        if saved:
            raise mismatch_error(ckpt.path, saved[0])
        return None, dict(ckpt.tensors), {}
    fmt = formats.detect(registry, ckpt)
    problem = formats.unsupported(registry, fmt, spec)
    if problem:
        key, reason = problem
        raise mismatch_error(ckpt.path, Mismatch("unsupported", source=fmt.label, key=key,
                                                 note=reason))
    return (fmt, *formats.to_model(registry, fmt, ckpt, model, spec))


def _drop_tied_copies(tensors, layout):
    """A tied save that kept both names holds the same tensor twice: keep the first name."""
    for alias, first in layout.aliases.items():
        a, b = tensors.get(alias), tensors.get(first)
        if a is not None and b is not None and a.shape == b.shape and torch.equal(a, b):
            del tensors[alias]


def _with_fix(m, spec, model, shapes):
    """``m`` with the spec key to change: found by :func:`hints.suggest`, else the component
    that holds the tensor."""
    if m.key:
        return m
    hint = suggest(spec, model, shapes, m.tensor)
    if hint is not None:
        return replace(m, key=hint.key, current=hint.current, value=hint.value,
                       note=m.note or hint.note)
    kind = kind_of(model, m.tensor)
    if kind in spec.components:
        return replace(m, key=f"components.{kind}", current=spec.components[kind].name,
                       advice=f"use the {kind} the checkpoint was saved with")
    return replace(m, advice="make the spec match the checkpoint")
