"""The check of a Hugging Face checkpoint's config.json against a spec, which every ``hf-*``
format shares: config.json is converted with the registered converter of its model_type (the
same one ``explorer spec-from-hf`` uses) and the two specs are compared key by key, layer by
layer, the first difference a :class:`explorer.weights.Mismatch`."""

import math

from explorer.weights import Mismatch

from .hf_llama_layout import _yaml

# Spec keys a checkpoint need not agree on: what the weights do not depend on.
UNCHECKED = ("name", "description", "seed", "tokenizer", "plugins", "analyses",
             "model.context_length", "model.dropout.", "components.ffn.aux_loss_coef",
             "components.ffn.z_loss_coef")


def check(ckpt, spec):
    """config.json, read by the registered converter of its model_type, against the spec: the
    first spec key where they differ (heads, kv heads, eps, rope theta, activation, window...)."""
    if not ckpt.config:
        return
    from explorer.spec.hf_config import convert
    from explorer.spec.loading import spec_from_dict

    source = str(ckpt.files[0].parent / "config.json")
    doc, origins = convert(ckpt.config, source, spec.plugin_manager.registry(),
                           spec.ignore_config_fields)
    theirs = spec_from_dict(doc, source=source, plugins=spec.plugin_manager)
    by_layer = bool(spec.layers or theirs.layers)
    for i, (have_all, current_all) in enumerate(zip(_comparable(theirs), _comparable(spec))):
        for key in current_all:
            have, current = have_all.get(key), current_all[key]
            if _same(have, current):
                continue
            fields = origins.get(key) or origins.get(key.removesuffix(".name")) or ()
            raw = ckpt.config.get(fields[0]) if len(fields) == 1 else None
            readable = raw is not None and not isinstance(raw, (dict, list)) and not by_layer
            target = key.removesuffix(".name")
            if by_layer and target.startswith("components."):
                # Layers differ: name the layer, and leave the rewrite to the reader.
                yield Mismatch("value", source="config.json", field=f"{target} at layer {i}",
                               have=have, advice=f"the spec has {_yaml(current)} there; give "
                               "the spec config.json's layout (explorer spec-from-hf prints it)")
                return
            yield Mismatch("value", source="config.json", field=fields[0] if readable else target,
                           have=raw if readable else have, key=target, current=current, value=have)
            return


def _comparable(spec):
    """Per layer, the spec flattened to dotted keys (the model's and the layer's components),
    with each parameter as the built model has it (glu's hidden 0 as the size Llama's rule
    gives), what the weights do not depend on left out and equivalent choices written one way
    (mha is gqa with a KV head per query head; Mistral's top-k softmax is the renormalised top
    k)."""
    from explorer.weights import resolved_layers

    registry = spec.plugin_manager.registry()
    model = {f"model.{name}": value for name, value in spec.to_dict()["model"].items()
             if not isinstance(value, dict)}
    out = []
    for layer, resolved in zip(spec.layer_components(), resolved_layers(spec)):
        flat = dict(model)
        for kind, choice in layer.items():
            params = dict(resolved[kind], name=choice.name)
            if choice.name == "mha":
                params.update(name="gqa", n_kv_heads=spec.model.n_heads)
            if params.get("router") == "topk_softmax":
                params["router"] = "softmax_topk_renorm"
            if params.get("hidden"):
                params.pop("multiple_of", None)  # used only to derive the hidden size
            component = registry.component(kind, choice.name)
            for name, value in params.items():
                param = component.param(name)
                if param is None or not param.numerics_only:
                    flat[f"components.{kind}.{name}"] = value
        out.append({k: v for k, v in flat.items() if not k.startswith(UNCHECKED)})
    return out


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6)
    return a == b
