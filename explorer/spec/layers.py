"""Per-layer layouts: the ``layers:`` entries of a spec, which layers each selects, and the
compact text that shows a pattern.

An entry selects layers with exactly one selector and overrides components there::

    layers:
      - {every: 2, offset: 1, components: {attention: {window: 4096}}}   # Gemma 2 local/global
      - {every: 4, offset: 3, components: {positional: none}}            # NoPE every 4th layer
      - {first: 3, components: {ffn: mlp}}                                # dense first layers

Entries apply in order: for each layer and kind, the last entry that selects the layer and names
the kind decides (whole: it does not merge with an earlier entry's choice). Each entry's choice is
resolved against the spec-wide one when the spec loads (validation.py): the same name, or
parameters alone, merge over the spec-wide parameters; another name starts from its defaults.
Plain data, no torch.
"""

import json
from dataclasses import dataclass, field

SELECTORS = ("every", "first", "last", "layers")
ENTRY_KEYS = ("every", "offset", "first", "last", "layers", "components")
# The kinds a layer may choose for itself. weight_tying ties the model's embedding and head.
LAYER_KINDS = ("norm", "activation", "ffn", "attention", "positional", "residual")


def selects(selector, value, offset, i, n_layers):
    """Whether layer ``i`` of ``n_layers`` is selected by ``selector: value`` (and ``offset``)."""
    if selector == "every":
        return i % value == offset
    if selector == "first":
        return i < value
    if selector == "last":
        return i >= n_layers - value
    return i in value  # "layers": explicit indices


@dataclass(frozen=True)
class LayerRule:
    """One validated ``layers:`` entry: its selector and the choices it makes."""

    selector: str  # one of SELECTORS
    value: int | tuple  # every/first/last: an int; layers: a tuple of indices
    offset: int = 0  # every only: the selected layers are those with i % every == offset
    components: dict = field(default_factory=dict)  # kind -> ComponentChoice, resolved

    def selects(self, i, n_layers):
        return selects(self.selector, self.value, self.offset, i, n_layers)

    def to_dict(self):
        """The entry as a spec writes it, with every choice resolved (loads back the same)."""
        out = {self.selector: list(self.value) if self.selector == "layers" else self.value}
        if self.selector == "every":
            out["offset"] = self.offset
        out["components"] = {k: {"name": c.name, **c.params} for k, c in self.components.items()}
        return out


def resolve(components, rules, n_layers):
    """Per layer, ``{kind: ComponentChoice}``: the spec-wide ``components`` with each rule that
    selects the layer applied in order."""
    return [resolve_layer(components, rules, i, n_layers) for i in range(n_layers)]


def resolve_layer(components, rules, i, n_layers):
    """``{kind: ComponentChoice}`` of layer ``i`` (see :func:`resolve`)."""
    choices = dict(components)
    for rule in rules:
        if rule.selects(i, n_layers):
            choices.update(rule.components)
    return choices


def resolve_dicts(saved):
    """Per layer, ``{kind: {name, **params}}`` from a ``Spec.to_dict()`` document (plain data, as
    a checkpoint carries it): what :func:`resolve` gives, for specs not validated here."""
    n_layers = saved.get("model", {}).get("n_layers", 0)
    layers = []
    for i in range(n_layers):
        choices = dict(saved.get("components", {}))
        for entry in saved.get("layers", ()):
            selector = next(s for s in SELECTORS if s in entry)
            if selects(selector, entry[selector], entry.get("offset", 0), i, n_layers):
                choices.update(entry.get("components", {}))
        layers.append(choices)
    return layers


# -- the compact text a report shows -------------------------------------------------------------

def index_text(indices):
    """Layer indices, compact: ``0-11``; ``1,3,5,..,23`` (a stride); ``0-2,4-6,8-10``."""
    indices = sorted(indices)
    if len(indices) > 3:
        step = indices[1] - indices[0]
        if step > 1 and all(b - a == step for a, b in zip(indices, indices[1:])):
            return f"{indices[0]},{indices[1]},{indices[2]},..,{indices[-1]}"
    runs, start = [], indices[0]
    for a, b in zip(indices, indices[1:] + [None]):
        if b != a + 1:
            runs.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ",".join(runs)


def _key(choice):
    return choice["name"], json.dumps(choice["params"], sort_keys=True)


def pattern(per_layer):
    """The kinds whose choice differs between layers, each with its groups of layers: a list of
    ``(kind, [(indices, name, {param: value that differs between groups}), ...])``.

    ``per_layer`` is a list (one per layer) of ``{kind: {"name", "params"}}``. Parameters shown
    are those whose values are not the same in every group of the same name, so
    ``gqa window=0`` / ``gqa window=4096`` rather than every parameter twice.
    """
    out = []
    kinds = list(per_layer[0]) if per_layer else []
    for kind in kinds:
        groups = {}
        for i, layer in enumerate(per_layer):
            groups.setdefault(_key(layer[kind]), (layer[kind], []))[1].append(i)
        if len(groups) < 2:
            continue
        rows = []
        for choice, indices in groups.values():
            peers = [c["params"] for c, _ in groups.values() if c["name"] == choice["name"]]
            differing = {p: v for p, v in choice["params"].items()
                         if any(other.get(p) != v for other in peers)}
            rows.append((indices, choice["name"], differing))
        out.append((kind, rows))
    return out


def pattern_texts(spec_dict):
    """``{kind: "0,2 gqa window=0; 1,3 gqa window=4"}`` for the kinds whose choice differs
    between the layers of a ``Spec.to_dict()`` document (what ``explorer compare`` shows)."""
    per_layer = [{kind: {"name": c["name"], "params": {k: v for k, v in c.items() if k != "name"}}
                  for kind, c in layer.items() if kind in LAYER_KINDS}
                 for layer in resolve_dicts(spec_dict)]
    return {kind: "; ".join(_row_text(index_text(ix), name, params) for ix, name, params in rows)
            for kind, rows in pattern(per_layer)}


def _row_text(where, name, params):
    return f"{where} {name} {' '.join(f'{p}={v}' for p, v in params.items())}".rstrip()


def pattern_lines(per_layer):
    """``pattern`` as text lines: ``attention   0,2,4,..,22 (12)  gqa window=0``."""
    found = pattern(per_layer)
    if not found:
        return []
    width = max(len(kind) for kind, _ in found)
    lines = []
    for kind, rows in found:
        texts = [f"{index_text(ix)} ({len(ix)})" for ix, _, _ in rows]
        span = max(map(len, texts))
        for n, ((_, name, params), text) in enumerate(zip(rows, texts)):
            label = kind if n == 0 else ""
            lines.append(f"{label:<{width}}  " + _row_text(f"{text:<{span}} ", name, params))
    return lines
