"""Model assembly: a GPT whose parts are resolved through the component registry.

The skeleton is the book's GPTModel (chapter 4): token embedding, positional encoding, dropout,
a stack of transformer blocks, a final norm and a linear output head. Every part except the
token embedding and the head comes from a registered component, built in the book's order so
that ``torch.manual_seed(123)`` gives the book's weights.
"""

import torch
from torch import nn

from .errors import ExplorerError, PluginError


class BuildContext:
    """What a component factory sees: the config, and a way to build the spec's other components."""

    def __init__(self, spec, registry, layer=None):
        self.spec = spec
        self.config = spec.model
        self.registry = registry
        self.layer = layer  # the block index while a block is being built, else None

    def at_layer(self, layer):
        return BuildContext(self.spec, self.registry, layer)

    def make(self, kind, **extra):
        """Build the spec's choice for ``kind``; ``extra`` are the kind's arguments (norm: dim)."""
        choice = self.spec.components[kind]
        component = self.registry.component(kind, choice.name)
        provider = self.registry.provider[(kind, choice.name)]
        try:
            factory = component.load()
        except Exception as exc:
            raise PluginError(f"plugin {provider.plugin}: cannot load the factory of {kind} "
                              f"{choice.name!r}: {type(exc).__name__}: {exc}") from exc
        try:
            built = factory(self, **choice.params, **extra)
        except ExplorerError:
            raise
        except Exception as exc:
            raise PluginError(f"plugin {provider.plugin}: {kind} {choice.name!r} failed to build "
                              f"({self.spec.source or 'spec'}: components.{kind}): "
                              f"{type(exc).__name__}: {exc}") from exc
        if kind != "weight_tying" and not isinstance(built, nn.Module):
            raise PluginError(f"plugin {provider.plugin}: {kind} {choice.name!r} returned "
                              f"{type(built).__name__}, expected a torch.nn.Module")
        if isinstance(built, nn.Module):
            built.explorer_kind = kind  # lets the params analysis attribute parameters to kinds
        return built


class GPTModel(nn.Module):

    def __init__(self, ctx):
        super().__init__()
        cfg = ctx.config
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.tok_emb.explorer_kind = "embedding"
        self.pos_emb = ctx.make("positional")
        self.drop_emb = nn.Dropout(cfg.dropout.embedding)
        self.trf_blocks = nn.Sequential(
            *[ctx.at_layer(i).make("residual") for i in range(cfg.n_layers)])
        self.final_norm = ctx.make("norm", dim=cfg.emb_dim)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        self.out_head.explorer_kind = "output_head"
        tie = ctx.make("weight_tying")
        if tie is not None:
            tie(self)

    def forward(self, in_idx):
        b, t = in_idx.shape  # (B, T) token ids
        if t > self.config.context_length:
            raise ValueError(f"Cannot forward sequence of length {t}, "
                             f"context_length is only {self.config.context_length}")
        positions = torch.arange(t, device=in_idx.device)
        x = self.pos_emb.embed(self.tok_emb(in_idx), positions)  # (B, T, C)
        x = self.drop_emb(x)
        for block in self.trf_blocks:
            x = block(x, self.pos_emb, positions)
        x = self.final_norm(x)
        return self.out_head(x)  # (B, T, vocab_size)


def build_model(spec, seed=None, device=None):
    """Build the model a spec describes, seeded with ``seed`` (default: the spec's seed).

    Parameters are created in the book's order, so ``build_model(load_spec(
    "specs/gpt2_small.yaml"), seed=123)`` holds the same weights as the book's
    ``torch.manual_seed(123); GPTModel(GPT_CONFIG_124M)``.
    """
    plugins = spec.plugin_manager
    if plugins is None:
        from .plugin_manager import get_plugin_manager
        plugins = get_plugin_manager()
    torch.manual_seed(spec.seed if seed is None else seed)
    ctx = BuildContext(spec, plugins.registry())
    if device is None:
        return GPTModel(ctx)
    with torch.device(device):
        return GPTModel(ctx)
