"""μP, the maximal update parametrization (Yang et al. 2022, Tensor Programs V), for Adam(W).

``model.parametrization: mup`` with ``model.base_width`` makes a model's initialisation, learning
rates and two multipliers depend on its width so that the best hyperparameters found at
``base_width`` carry over to wider (and narrower) models. One number describes the width:
``m = emb_dim / base_width`` (:attr:`ModelConfig.width_multiplier`); every dimension that grows
with the width is assumed to grow in proportion to ``emb_dim`` (an FFN of ``4 * emb_dim``, heads
of ``emb_dim / n_heads``). At ``m = 1`` μP and the standard parametrization are the same model
with the same weights and updates.

Each parameter has a role, after how many of its dimensions grow with the width:

- ``matrix_like``: two or more (hidden weights: attention and FFN projections). Adam's learning
  rate is divided by ``m`` and its weight decay multiplied by ``m`` (AdamW decays by ``lr *
  weight_decay``: the decay per step stays what it is at the base width). The initialisation is
  PyTorch's (variance ~ 1 / fan_in), already what μP asks for; an ``nn.Linear``'s bias is
  multiplied by ``sqrt(m)``, so that biases keep their base-width size instead of shrinking as
  ``1 / sqrt(fan_in)``.
- ``vector_like``: one or none (token and position embeddings, norm gains, biases). Unchanged.
- ``output``: the model's own head, when it is not tied to the token embedding (the core gives
  this role; a component cannot). Its weights are multiplied by ``sqrt(m)`` at initialisation
  and the logits by ``1 / m`` in every forward (the output multiplier): the effective weight has
  variance ~ 1 / fan_in^2. Its Adam learning rate is unchanged. A head tied to the embedding
  keeps the embedding's initialisation and gets the output multiplier.

Attention scores ``q . k`` by ``1 / d`` instead of ``1 / sqrt(d)``, as ``sqrt(base d) / d`` (the
same at the base width): the built-in attentions read ``ctx.config.parametrization`` and
``ctx.config.width_multiplier`` when they are built (docs/plugins.md).

Which dimensions grow is found, by default, by building the same spec at twice the width on the
meta device (no memory, no random numbers: :func:`explorer.model.gpt.mup_roles`) and comparing
every parameter's shape: a dimension that differs grows with the width. A component whose
parameters do not follow that rule (a dimension that grows but not with emb_dim, say) declares
roles itself with a method ``explorer_mup_roles()`` -> ``{parameter name: "matrix_like" |
"vector_like"}``, the names as its own ``named_parameters()`` gives them; the nearest declaring
module wins.
"""

import dataclasses

from explorer.errors import PluginError

VECTOR_LIKE, MATRIX_LIKE, OUTPUT = "vector_like", "matrix_like", "output"
DECLARABLE_ROLES = (VECTOR_LIKE, MATRIX_LIKE)
ROLES_METHOD = "explorer_mup_roles"


def is_mup(config):
    return config.parametrization == "mup"


def widened(spec, factor=2):
    """``spec`` with ``emb_dim`` multiplied by ``factor`` and everything else the same (the
    twin whose shapes :func:`parameter_roles` compares)."""
    return with_width(spec, spec.model.emb_dim * factor)


def with_width(spec, width):
    """``spec`` at ``emb_dim = width`` (the base width, the heads and the rest unchanged)."""
    return dataclasses.replace(spec, model=dataclasses.replace(spec.model, emb_dim=width))


def parameter_roles(model, twin):
    """``{parameter name: role}`` for every parameter of ``model`` (each tensor once, by the
    name ``named_parameters()`` gives it), as the module docstring says. ``twin``: the same
    spec built at another width (:func:`explorer.model.gpt.mup_roles` builds it at twice the
    width, on the meta device); a dimension whose size differs grows with the width."""
    shapes = dict(twin.named_parameters())
    roles = {}
    for name, p in model.named_parameters():
        other = shapes.get(name)
        if other is None or other.dim() != p.dim():
            raise PluginError(f"μP: parameter {name} {tuple(p.shape)} has no counterpart in the "
                              f"same spec at another width; declare its role with "
                              f"{ROLES_METHOD}() (docs/plugins.md)")
        growing = sum(a != b for a, b in zip(p.shape, other.shape))
        roles[name] = MATRIX_LIKE if growing >= 2 else VECTOR_LIKE
    for prefix, module in model.named_modules():  # parents first: a nearer declaration wins
        declare = getattr(module, ROLES_METHOD, None)
        if not callable(declare):
            continue
        owned = dict(module.named_parameters())
        for local, role in declare().items():
            if role not in DECLARABLE_ROLES or local not in owned:
                raise PluginError(f"μP: {type(module).__name__}.{ROLES_METHOD}() declares "
                                  f"{local!r}: {role!r}; expected one of its parameters ("
                                  f"{', '.join(owned) or 'none'}) with a role "
                                  f"{' or '.join(DECLARABLE_ROLES)}")
            name = f"{prefix}.{local}" if prefix else local
            if name in roles:  # a tensor shared under another name keeps its first name's role
                roles[name] = role
    if not head_is_tied(model):
        roles["out_head.weight"] = OUTPUT
    return roles


def head_is_tied(model):
    return model.out_head.weight is model.tok_emb.weight


def apply_initialisation(model, roles, m):
    """Turn ``model``'s fresh standard initialisation into μP's at width multiplier ``m``, in
    place (no random numbers drawn), by ``roles`` (:func:`parameter_roles`): the untied head's
    weights times ``sqrt(m)``, each matrix-like ``nn.Linear``'s bias times ``sqrt(m)``."""
    import torch
    from torch import nn

    names = {id(p): name for name, p in model.named_parameters()}
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, nn.Linear):
                continue
            role = roles.get(names.get(id(module.weight)))
            if role == OUTPUT:
                module.weight.mul_(m ** 0.5)
            if role in (OUTPUT, MATRIX_LIKE) and module.bias is not None:
                module.bias.mul_(m ** 0.5)
    return model


def optimizer_groups(model, config, weight_decay, roles=None):
    """What the training loop hands AdamW: ``model.parameters()`` under the standard
    parametrization (every number as before); under μP (``config``, a ModelConfig) one group
    per role of ``roles`` (:func:`explorer.model.gpt.mup_roles`), each with an ``lr_scale`` the
    loop multiplies the scheduled learning rate by (``1 / m`` for matrix-like parameters) and
    its weight decay (``weight_decay * m`` for them)."""
    if not is_mup(config):
        return model.parameters()
    m = config.width_multiplier
    named = dict(model.named_parameters())
    groups = []
    for role in (MATRIX_LIKE, VECTOR_LIKE, OUTPUT):
        params = [named[name] for name, r in roles.items() if r == role
                  and named[name].requires_grad]
        if not params:
            continue
        matrix = role == MATRIX_LIKE
        groups.append({"params": params, "role": role, "lr_scale": 1 / m if matrix else 1.0,
                       "weight_decay": weight_decay * m if matrix else weight_decay})
    return groups


def output_multiplier(config):
    """What the logits are multiplied by: ``1 / m`` under μP, 1 otherwise."""
    return 1.0 / config.width_multiplier


def attention_scale(config, head_dim, grows_with_width, scale=None):
    """The factor an attention multiplies ``q . k`` by: ``scale`` (None: ``1 / sqrt(head_dim)``),
    and under μP, when the head size grows with the width, divided by ``sqrt(m)`` too, which
    makes it ``sqrt(base head size) / head size``: 1/d scaling, equal to the standard one at the
    base width. None (the attention's default) where nothing changes."""
    m = config.width_multiplier
    if m == 1.0 or not grows_with_width:
        return scale
    return (scale if scale is not None else head_dim ** -0.5) / m ** 0.5
