"""Which blocks a model holds, and which layers each stands for: the compact model of shapes.

Shape-only analyses (params, memory, flops, summary) need no weights, and the blocks of a stack
are copies of a few distinct configurations: GPT-3's 96 blocks are one, a Gemma 2 local/global
stack two. ``build_model(spec, compact=True)`` builds one block per distinct configuration (a
few more, below) and a :class:`StackPlan` that says which built block stands for each layer;
the analyses count and measure each built block once and sum with multiplicities. A full model
has the identity plan, so every function here gives the same answer on either.

Two layers are alike when ``spec.components_at(i)`` resolves to equal choices. Measurements also
depend on what came before a block (the storages a block saves for backward are counted once:
its input is not counted again if the block before it saved it already), so the plan measures
each distinct pair (configuration before, configuration) at its first place in the stack, in
stack order, with the real predecessor in front of it. What that assumes, and what
``build_model`` checks (falling back to every block when a check fails): a factory does not
read ``ctx.layer`` (a block that depends on its index is not a copy of another), and no
parameter or buffer is shared between two blocks or between a block and the rest of the model.

Plain data and module walks: importing this module does not import torch.
"""

from dataclasses import dataclass

EMBEDDING = None  # what precedes the first block, in a (configuration before, configuration) pair


@dataclass(frozen=True)
class StackPlan:
    """The blocks a model built and what each stands for.

    ``built``: the layer index of each built block, in the order the forward runs them (a
    compact model's stack, e.g. ``(0, 1)`` for 96 identical blocks). ``counts[i]``: the position
    in ``built`` of the block whose parameters and shapes are layer ``i``'s. ``measures[i]``: the
    position of the block whose measurement (saved activations) is layer ``i``'s: one that ran
    after a block configured like layer ``i - 1``.
    """

    n_layers: int
    built: tuple
    counts: tuple
    measures: tuple

    @classmethod
    def full(cls, n_layers):
        every = tuple(range(n_layers))
        return cls(n_layers, every, every, every)

    @property
    def is_full(self):
        return self.built == tuple(range(self.n_layers))

    def layers_of(self, position):
        """The layers whose counts the built block at ``position`` gives (none for a block
        built only to measure another after it)."""
        return [i for i, k in enumerate(self.counts) if k == position]


def plan_for(configs):
    """The :class:`StackPlan` of a stack whose layer ``i`` has configuration ``configs[i]``
    (any values compared with ``==``).

    The stack walks the layers in order and keeps a layer when the pair (configuration before,
    configuration) is new, putting the real predecessor's configuration in front of it when the
    stack's last block differs. Then each configuration that repeats gets a second copy (the
    copies are checked not to share tensors), and the stack ends with the last layer's
    configuration, so the final norm and head follow what they follow in the real model.
    """
    distinct = []
    ids = []
    for config in configs:
        if config not in distinct:
            distinct.append(config)
        ids.append(distinct.index(config))
    n = len(ids)
    built, first, measured = [], {}, {}

    def add(layer):
        before = ids[built[-1]] if built else EMBEDDING
        built.append(layer)
        position = len(built) - 1
        first.setdefault(ids[layer], position)
        measured.setdefault((before, ids[layer]), position)

    for i in range(n):
        before = ids[i - 1] if i else EMBEDDING
        if (before, ids[i]) in measured:
            continue
        if i and ids[built[-1]] != before:
            add(i - 1)  # the real predecessor's configuration, so that this pair is measured
        add(i)
    for config in range(len(distinct)):
        layers = [i for i in range(n) if ids[i] == config]
        if len(layers) > 1 and sum(ids[b] == config for b in built) < 2:
            add(layers[1])
    if built and ids[built[-1]] != ids[n - 1]:
        add(n - 1)
    if len(built) >= n:  # nothing to gain (a stack whose pairs rarely repeat): build every block
        return StackPlan.full(n)
    counts = tuple(first[ids[i]] for i in range(n))
    measures = tuple(measured[(ids[i - 1] if i else EMBEDDING, ids[i])] for i in range(n))
    return StackPlan(n, tuple(built), counts, measures)


def plan_of_spec(spec):
    """The compact plan of ``spec``'s stack: its layers' resolved component choices compared."""
    return plan_for(spec.layer_components())


# -- reading a model through its plan ----------------------------------------------------------

def stack_plan(model):
    """The model's :class:`StackPlan`: a compact model's, else the identity (every block built)."""
    plan = getattr(model, "stack_plan", None)
    return plan if plan is not None else StackPlan.full(len(model.trf_blocks))


def layer_blocks(model):
    """Per layer, the block that stands for it (a compact model repeats its built blocks)."""
    plan = stack_plan(model)
    return [model.trf_blocks[k] for k in plan.counts]


def per_layer(model, per_built):
    """A measurement per built block (``per_built[k]``) as one per layer, through the plan's
    ``measures``."""
    return [per_built[k] for k in stack_plan(model).measures]


def stack_total(model, measure, block_measure=None):
    """``measure(model)`` of the full model: a sum over the model's modules whose tensors are
    each counted once (parameters, bytes). On a compact model, the built blocks' share is
    replaced by each layer's block: ``measure(model) - sum(built) + sum(per layer)``.
    ``block_measure`` measures one block (default: ``measure``)."""
    plan = stack_plan(model)
    if plan.is_full:
        return measure(model)
    block_measure = block_measure or measure
    blocks = [block_measure(block) for block in model.trf_blocks]
    return measure(model) - sum(blocks) + sum(blocks[k] for k in plan.counts)


def shared_tensors(model):
    """Where a block shares a parameter or buffer with another block or with the rest of the
    model: a list of ``(block position, other)`` (empty when every block owns its tensors), with
    ``other`` a block position or ``"model"``."""
    owners = {}
    shared = []
    for k, block in enumerate(model.trf_blocks):
        for t in [*block.parameters(), *block.buffers()]:
            other = owners.setdefault(id(t), k)
            if other != k:
                shared.append((k, other))
    outside = {id(t) for name, t in [*model.named_parameters(remove_duplicate=False),
                                     *model.named_buffers(remove_duplicate=False)]
               if not name.startswith("trf_blocks.")}
    shared.extend((owners[i], "model") for i in set(owners) & outside)
    return shared
