"""Model assembly: a GPT whose parts are resolved through the component registry.

The skeleton is the book's GPTModel (chapter 4): token embedding, positional encoding, dropout,
a stack of transformer blocks, a final norm and a linear output head. Every part except the
token embedding and the head comes from a registered component, built in the book's order so
that ``torch.manual_seed(123)`` gives the book's weights.
"""

import contextlib

import torch
from torch import nn

from explorer.errors import ExplorerError, ParamError, PluginError
from explorer.model.contracts import max_positions
from explorer.model.parametrization import (apply_initialisation, output_multiplier,
                                            parameter_roles, widened)
from explorer.model.stack import StackPlan, plan_of_spec, shared_tensors


INFERENCE_LAYOUT_METHOD = "explorer_inference_layout"


class BuildContext:
    """What a component factory sees: the config, and a way to build the spec's other components."""

    def __init__(self, spec, registry, layer=None):
        self.spec = spec
        self.config = spec.model
        self.registry = registry
        self._layer = layer
        self.layer_read = False  # whether a factory asked which block it is in

    @property
    def layer(self):
        """The block index while a block is being built, else None.

        A block whose factories read it may differ from a block of the same choices at another
        index, so a compact build (explorer.model.stack) builds every block when one does.
        """
        self.layer_read = True
        return self._layer

    def at_layer(self, layer):
        return BuildContext(self.spec, self.registry, layer)

    def choice(self, kind):
        """The spec's :class:`ComponentChoice` for ``kind`` here: block ``layer``'s (the
        ``layers:`` entries applied) inside a block, else the spec-wide one."""
        if self._layer is None:
            return self.spec.components[kind]
        return self.spec.components_at(self._layer)[kind]

    def make(self, kind, **extra):
        """Build the spec's choice for ``kind`` (:meth:`choice`); ``extra`` are the kind's
        arguments (norm: dim)."""
        choice = self.choice(kind)
        component = self.registry.component(kind, choice.name)
        provider = self.registry.provider[(kind, choice.name)]
        try:
            factory = component.load()
        except Exception as exc:
            raise PluginError(f"plugin {provider.plugin}: cannot load the factory of {kind} "
                              f"{choice.name!r}: {type(exc).__name__}: {exc}") from exc
        try:
            built = factory(self, **choice.params, **extra)
        except Exception as exc:
            # A ParamError belongs in the component's check, run when the spec loads: raised by
            # the factory, it is the plugin's fault, like any other exception.
            if isinstance(exc, ExplorerError) and not isinstance(exc, ParamError):
                raise
            layer = f", layer {self._layer}" if self._layer is not None else ""
            raise PluginError(f"plugin {provider.plugin}: {kind} {choice.name!r} failed to build "
                              f"({self.spec.source or 'spec'}: components.{kind}{layer}): "
                              f"{type(exc).__name__}: {exc}") from exc
        if kind != "weight_tying" and not isinstance(built, nn.Module):
            raise PluginError(f"plugin {provider.plugin}: {kind} {choice.name!r} returned "
                              f"{type(built).__name__}, expected a torch.nn.Module")
        if isinstance(built, nn.Module):
            built.explorer_kind = kind  # lets the params analysis attribute parameters to kinds
        return built


class GPTModel(nn.Module):
    """The book's GPTModel with registered components. ``plan`` (an
    :class:`explorer.model.stack.StackPlan`) builds only some of the blocks, each standing for layers
    alike (a compact model, for analyses of shapes); by default every block is built."""

    def __init__(self, ctx, plan=None):
        super().__init__()
        cfg = ctx.config
        self.config = cfg
        self.stack_plan = plan or StackPlan.full(cfg.n_layers)
        self._beyond_context = False  # see beyond_context()
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.tok_emb.explorer_kind = "embedding"
        self.pos_emb = ctx.make("positional")
        self._layer_positional(ctx)
        self.drop_emb = nn.Dropout(cfg.dropout.embedding)
        self.trf_blocks = nn.Sequential(
            *[self._block(ctx.at_layer(i), plan) for i in self.stack_plan.built])
        self.final_norm = ctx.make("norm", dim=cfg.emb_dim)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        self.out_head.explorer_kind = "output_head"
        self.output_multiplier = output_multiplier(cfg)  # μP: 1 / width multiplier, else 1
        tie = ctx.make("weight_tying")
        if tie is not None:
            tie(self)

    def _layer_positional(self, ctx):
        """The positional encoding each block's attention gets: the spec-wide ``pos_emb``,
        except on layers whose ``layers:`` entry chose another, built once per distinct choice
        into ``layer_pos`` (NoPE every 4th layer is one ``none`` for all of them). Only the
        spec-wide encoding's ``embed`` acts on the tokens; a layer's acts inside attention."""
        wide = ctx.choice("positional")
        distinct, extra, self._pos_of_layer = {}, [], []
        for i in range(self.config.n_layers):
            here = ctx.at_layer(i)
            choice = here.choice("positional")
            if choice == wide:
                self._pos_of_layer.append(None)
                continue
            key = (choice.name, repr(sorted(choice.params.items())))
            if key not in distinct:
                distinct[key] = len(extra)
                extra.append(_refuse_embedding(here.make("positional"), choice.name, i))
            self._pos_of_layer.append(distinct[key])
        self.layer_pos = nn.ModuleList(extra) if extra else None

    @staticmethod
    def _block(here, plan):
        block = here.make("residual")
        if plan is not None and here.layer_read:
            raise LayerDependent(here._layer)
        return block

    def positional_at(self, i):
        """The positional encoding block ``i``'s attention uses (see ``_layer_positional``)."""
        index = self._pos_of_layer[i]
        return self.pos_emb if index is None else self.layer_pos[index]

    def positional_encodings(self):
        """Every distinct positional encoding the model uses: the spec-wide one, then the
        layers' own (``layer_pos``)."""
        return [self.pos_emb, *(self.layer_pos or ())]

    def max_positions(self):
        """The longest sequence every positional encoding can place: the smallest of their
        ``max_positions()`` (a learned table's rows), or None when none has a limit."""
        limits = [n for n in (max_positions(p) for p in self.positional_encodings())
                  if n is not None]
        return min(limits, default=None)

    @contextlib.contextmanager
    def beyond_context(self):
        """Within the block, forward accepts sequences longer than ``context_length``, as far
        as the positional encodings reach (:meth:`max_positions`; no limit for RoPE, ALiBi,
        sinusoidal or none): for measuring length extrapolation. Outside it, and by default,
        forward refuses them as the book's does."""
        before, self._beyond_context = self._beyond_context, True
        try:
            yield self
        finally:
            self._beyond_context = before

    def forward(self, in_idx, cache=None, last_only=False):
        """Logits (B, T, vocab_size) for token ids ``in_idx`` (B, T).

        ``cache`` (an :class:`explorer.model.kv_cache.ModelCache`) makes this an incremental step:
        the tokens sit at positions ``cache.offset + arange(T)`` and attend to the earlier ones
        the cache holds. ``last_only`` runs the final norm and the head on the last position
        alone and returns (B, 1, vocab_size): all that generation needs.
        """
        b, t = in_idx.shape  # (B, T) token ids
        start = 0 if cache is None else cache.offset
        if self._beyond_context:
            limit = self.max_positions()
            if limit is not None and start + t > limit:
                raise ValueError(f"Cannot forward sequence of length {t}, the positional "
                                 f"encodings place only {limit} positions")
        elif start + t > self.config.context_length:
            after = f" after {start} cached tokens" if start else ""
            raise ValueError(f"Cannot forward sequence of length {t}{after}, "
                             f"context_length is only {self.config.context_length}")
        positions = torch.arange(start, start + t, device=in_idx.device)
        x = self.tok_emb(in_idx)  # (B, T, C)
        if self.config.scale_embeddings:  # Gemma: sqrt(emb_dim) as float32, then rounded to x's dtype
            x = x * torch.tensor(self.config.emb_dim ** 0.5, device=x.device).to(x.dtype)
        x = self.pos_emb.embed(x, positions)
        x = self.drop_emb(x)
        for i, (layer, block) in enumerate(zip(self.stack_plan.built, self.trf_blocks)):
            pos = self.positional_at(layer)
            if cache is None:
                x = block(x, pos, positions)
            else:
                x = block(x, pos, positions, cache=cache[i])
        if cache is not None:
            cache.advance(t)
        if last_only:
            x = x[:, -1:]  # (B, 1, C)
        x = self.final_norm(x)
        logits = self.out_head(x)  # (B, T, vocab_size)
        if self.output_multiplier != 1.0:  # μP's output multiplier
            logits = logits * self.output_multiplier
        if self.config.logit_softcap:  # Gemma 2: squash into (-c, c)
            cap = self.config.logit_softcap
            logits = cap * torch.tanh(logits / cap)
        return logits


class LayerDependent(Exception):
    """A compact build met a block whose factories read ``ctx.layer``: build every block."""


def _refuse_embedding(encoding, name, layer):
    """A layer's positional encoding acts inside attention only: one that would add to the
    token embeddings (which are model-wide) is refused rather than silently ignored."""
    from explorer.model.contracts import PositionalEncoding

    if type(encoding).embed is not PositionalEncoding.embed:
        raise ExplorerError(f"layers: positional {name!r} at layer {layer} acts on the token "
                            "embeddings, which are model-wide; per layer choose an encoding that "
                            "acts inside attention (rotate or bias), or set it in "
                            "components.positional")
    return encoding


def build_model(spec, seed=None, device=None, *, fork_rng=True, compact=False):
    """Build the model a spec describes, seeded with ``seed`` (default: the spec's seed).

    Parameters are created in the book's order, so ``build_model(load_spec(
    "specs/gpt2_small.yaml"), seed=123)`` holds the same weights as the book's
    ``torch.manual_seed(123); GPTModel(GPT_CONFIG_124M)``. The build draws from a forked random
    stream: the caller's global random state (CPU, and the accelerator built on) is the same
    afterwards. ``fork_rng=False`` builds from the global stream instead, as the book does, and
    leaves it where the build stopped: the book's training-mode forward then draws its dropout
    masks from there. Building reads no file: :func:`explorer.weights.load_model` builds and
    loads a checkpoint into the model.

    ``compact=True`` builds one block per distinct layer configuration (a few more: see
    :mod:`explorer.model.stack`), which stands for the whole stack in the counts and measurements of
    analyses that need only shapes (on the meta device or fake tensors, a 96-layer model costs
    two blocks). It falls back to every block when the blocks are not copies of each other.
    """
    plugins = spec.plugin_manager
    if plugins is None:
        from explorer.registry.plugin_manager import get_plugin_manager
        plugins = get_plugin_manager()
    ctx = BuildContext(spec, plugins.registry())
    device = torch.device(device) if device is not None else None
    with seeded(spec.seed if seed is None else seed, device, fork_rng):
        with device if device is not None else contextlib.nullcontext():
            model = _compact_model(ctx) if compact else GPTModel(ctx)
    m = spec.model.width_multiplier  # μP away from its base width; 1.0 otherwise
    if m == 1.0 or any(p.device.type == "meta" for p in model.parameters()):
        return model  # nothing to scale, or no values to scale (a model of shapes)
    # μP rescales the standard initialisation (drawing nothing): explorer.model.parametrization
    return apply_initialisation(model, mup_roles(model, spec), m)


def mup_roles(model, spec):
    """μP's role of each of ``model``'s parameters (:mod:`explorer.model.parametrization`):
    its shapes against those of ``spec`` built at twice the width on the meta device."""
    return parameter_roles(model, build_model(widened(spec), device="meta"))


def _compact_model(ctx):
    """A :class:`GPTModel` of the spec's compact plan, or of every block when a block reads
    ``ctx.layer`` or shares a tensor with another block or the rest of the model."""
    plan = plan_of_spec(ctx.spec)
    if not plan.is_full:
        try:
            model = GPTModel(ctx, plan)
        except LayerDependent:
            model = None
        if model is not None and not shared_tensors(model):
            return model
    return GPTModel(ctx)


def inference_layout(model):
    """Store every ``nn.Linear`` weight input-major, in place, and return the model.

    The same values, shapes and state_dict; only the memory order changes (strides ``(1,
    out)``), so ``F.linear`` multiplies by a contiguous (in, out) matrix. A matrix-vector
    product, what generating one token at a time does, streams that order about 1.5x faster
    on CPUs (benchmarks/README.md); training prefers the default order (its weight gradients
    come out-major and would be copied to match), so only inference uses this. A weight shared
    with an embedding (a tied head) keeps its rows contiguous for the lookups. A module with a
    method ``explorer_inference_layout()`` lays out its own weights first (the built-in
    attention puts its query, key and value weights side by side, for one product).
    """
    for module in model.modules():  # a component may lay its weights out itself
        hook = getattr(module, INFERENCE_LAYOUT_METHOD, None)
        if callable(hook):
            hook()
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    with torch.no_grad():
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if isinstance(module, nn.Linear) and id(weight) not in embedded \
                    and weight.stride(0) != 1:  # not input-major yet
                weight.data = weight.data.t().contiguous().t()  # (out, in), stored (in, out)
    return model


@contextlib.contextmanager
def seeded(seed, device, fork=True):
    """Seed the CPU's generator and ``device``'s (None: the CPU only) inside
    ``torch.random.fork_rng`` (unless not ``fork``), which restores every generator it forked.

    Only that device's generator is seeded (``torch.manual_seed`` would also reseed every CUDA
    device, which fork_rng on the CPU does not restore). The meta device draws no numbers.
    """
    kind, devices = rng_devices(device)
    with torch.random.fork_rng(devices=devices, device_type=kind, enabled=fork):
        torch.default_generator.manual_seed(seed)
        if devices:
            device_module = torch.get_device_module(kind)
            if kind == "cuda":
                with device_module.device(devices[0]):
                    device_module.manual_seed(seed)
            else:
                device_module.manual_seed(seed)
        yield


def rng_devices(device):
    """``(device_type, devices)`` for ``torch.random.fork_rng`` when building on ``device``:
    no accelerator for the CPU and meta (fork_rng always forks the CPU's generator), else the
    one device built on (an index-less ``cuda`` is the current device; MPS has one generator)."""
    if device is None or device.type in ("cpu", "meta"):
        return "cuda", []
    if device.type == "cuda" and device.index is None:
        return "cuda", [torch.cuda.current_device()]
    return device.type, [device.index or 0]
