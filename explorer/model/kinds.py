"""Finding a model's parts by the component kind the registry tagged them with.

``BuildContext.make`` sets ``explorer_kind`` on every module it builds (``attention``, ``ffn``,
``norm``, ...), so analyses find a block's attention and feed-forward whatever attribute names
the block gives them (``attn`` and ``mlp``, say). Nothing here knows a built-in.
"""


def kind_of(module):
    """The component kind ``module`` was built as, or None for a module the registry did not make."""
    return getattr(module, "explorer_kind", None)


def sublayers(module):
    """The outermost tagged modules inside ``module`` (itself excluded), in definition order:
    a list of ``(name, kind, submodule)``, ``name`` relative to ``module``.

    In a block these are its attention, feed-forward and norms; what they contain (an FFN's
    activation, a QK-norm inside an attention) belongs to them and is not listed.
    """
    found = []

    def walk(parent, prefix):
        for name, child in parent.named_children():
            kind = kind_of(child)
            if kind:
                found.append((prefix + name, kind, child))
            else:
                walk(child, f"{prefix}{name}.")

    walk(module, "")
    return found


def parameter_sublayer_kinds(module):
    """Each parameter name of ``module`` mapped to the kind of the sublayer holding it, or None
    for a parameter outside every tagged sublayer."""
    prefixes = [(name + ".", kind) for name, kind, _ in sublayers(module)]
    kinds = {}
    for name, _ in module.named_parameters():
        kinds[name] = next((kind for prefix, kind in prefixes if name.startswith(prefix)), None)
    return kinds
