"""Validating a spec's ``layers:`` entries (explorer.spec.layers) into :class:`LayerRule` s.

Each entry is checked like the spec-wide ``components:`` (the same Params, ranges and ``check``
rules, through :mod:`explorer.spec.validator`), and every layer it changes is checked as a
whole: a rule across kinds (RoPE's even head size) sees the layer's own choices. Errors name the
entry: ``layers[1].every``, ``layers[0].components.attention.window``.
"""

from explorer.registry.components import COMPONENT_KINDS
from explorer.errors import SpecError
from explorer.spec.layers import ENTRY_KEYS, LAYER_KINDS, SELECTORS, LayerRule, resolve_layer
from explorer.spec.validator import check_choice, component_choice, show


def validate_layers(v, entries, config, components):
    """The ``layers:`` entries as :class:`LayerRule` s, each choice resolved against the
    spec-wide ``components`` and checked, alone and with the other kinds of every layer it makes."""
    if not isinstance(entries, list):
        raise v.error("layers", f"expected a list of entries, got {show(entries)}",
                      "e.g. layers: [{every: 2, offset: 1, components: {attention: "
                      "{window: 4096}}}]")
    rules = tuple(_layer_rule(v, f"layers[{n}]", entry, config, components)
                  for n, entry in enumerate(entries))
    checked = set()
    for i in range(config.n_layers):
        # Which entry (None: the spec-wide choice) made each kind of layer i: layers made by the
        # same entries are alike, so each combination is checked once.
        made_by = {kind: None for kind in components}
        for n, rule in enumerate(rules):
            if rule.selects(i, config.n_layers):
                made_by.update((kind, n) for kind in rule.components)
        combination = tuple(made_by.values())
        if combination in checked or all(n is None for n in combination):
            continue
        checked.add(combination)
        choices = resolve_layer(components, rules, i, config.n_layers)
        for kind, n in made_by.items():
            if n is not None:
                check_choice(v, config, f"layers[{n}].components.{kind}", choices[kind], choices)
                continue
            try:
                check_choice(v, config, f"components.{kind}", choices[kind], choices)
            except SpecError as exc:  # a spec-wide choice fails only with this layer's others
                raise SpecError(exc.source, exc.key, f"at layer {i}: {exc.problem}",
                                exc.valid) from None
    return rules


def _layer_rule(v, key, entry, config, components):
    entry = v.mapping(entry, key)
    v.unknown_keys(entry, ENTRY_KEYS, f"{key}.")
    given = [s for s in SELECTORS if s in entry]
    one = "give exactly one of every (with offset), first, last, layers"
    if not given:
        raise v.error(key, "no layer selector", one)
    if len(given) > 1:
        raise v.error(f"{key}.{given[1]}", f"given together with {given[0]}", one)
    selector, n_layers = given[0], config.n_layers
    if "offset" in entry and selector != "every":
        raise v.error(f"{key}.offset", f"only with every, not with {selector}", one)
    if selector == "layers":
        value = _layer_indices(v, f"{key}.layers", entry["layers"], n_layers)
    else:
        value = v.integer(entry, f"{key}.{selector}",
                          maximum=None if selector == "every" else n_layers)
    offset = 0
    if selector == "every":
        offset = v.integer(entry, f"{key}.offset", minimum=0) if "offset" in entry else 0
        if offset >= value:
            raise v.error(f"{key}.offset", f"must be < every ({value}), got {offset}",
                          f"0..{value - 1}: the layers i with i % {value} == offset")
        if offset >= n_layers:
            raise v.error(f"{key}.offset", f"selects no layer: offset {offset} is past the last "
                          f"layer {n_layers - 1} (model.n_layers {n_layers})")
    if "components" not in entry:
        raise v.error(f"{key}.components", "missing",
                      f"the kinds this entry overrides: {', '.join(LAYER_KINDS)}")
    comps = v.mapping(entry["components"], f"{key}.components")
    chosen = {}
    for kind, choice in comps.items():
        chosen[kind] = _layer_choice(v, f"{key}.components.{kind}", kind, choice, components)
    return LayerRule(selector, value, offset, chosen)


def _layer_indices(v, key, value, n_layers):
    valid = f"layer indices 0..{n_layers - 1} (model.n_layers {n_layers}), each once"
    if not isinstance(value, list) or not value:
        raise v.error(key, f"expected a non-empty list of layer indices, got {show(value)}", valid)
    seen = set()
    for index in value:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_layers:
            raise v.error(key, f"{show(index)} is not a layer index", valid)
        if index in seen:
            raise v.error(key, f"layer {index} is listed twice", valid)
        seen.add(index)
    return tuple(value)


def _layer_choice(v, key, kind, choice, components):
    """One kind of a layers: entry, resolved against the spec-wide choice: the same name (or
    parameters alone) merges over its parameters; another name starts from its defaults."""
    if kind not in LAYER_KINDS:
        if kind in COMPONENT_KINDS:
            raise v.error(key, f"{kind} is model-wide, not per layer",
                          f"set components.{kind}; per layer: {', '.join(LAYER_KINDS)}")
        v.unknown_keys({kind: None}, LAYER_KINDS, key.rsplit(".", 1)[0] + ".")
    if isinstance(choice, str):
        choice = {"name": choice}
    if not isinstance(choice, dict):
        raise v.error(key, f"expected a name or {{name: ..., param: value}}, got {show(choice)}")
    wide = components[kind]
    if choice.get("name", wide.name) == wide.name:
        choice = {**wide.params, **choice, "name": wide.name}
    resolved = component_choice(v, kind, choice, key)
    if v.registry.component(kind, resolved.name).model_wide:
        per_layer = [n for n in v.registry.names(kind)
                     if not v.registry.component(kind, n).model_wide]
        raise v.error(key, f"{resolved.name} acts on the whole model (the token embeddings), "
                      "not inside a block", f"per layer: {', '.join(per_layer)}; or set it in "
                      f"components.{kind}")
    return resolved
