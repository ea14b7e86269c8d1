"""The typed spec: what ``load_spec`` returns once a YAML spec is validated.

Plain frozen dataclasses (litgpt-style): everything after validation can trust these values.
"""

import copy
import os
from dataclasses import dataclass, field

from explorer.spec.layers import resolve, resolve_layer

DROPOUT_PLACES = ("embedding", "attention", "residual")


@dataclass(frozen=True)
class Dropout:
    embedding: float = 0.0  # after the token + position embeddings
    attention: float = 0.0  # on the attention weights
    residual: float = 0.0  # on each sublayer's output, before it joins the shortcut


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int  # rows of the token embedding and the output head
    context_length: int  # the longest sequence the model accepts
    emb_dim: int  # the width of the residual stream
    n_heads: int  # attention heads per block
    n_layers: int  # transformer blocks
    qkv_bias: bool = False  # biases on the query, key and value projections
    dropout: Dropout = field(default_factory=Dropout)
    # Gemma: multiply the token embeddings by sqrt(emb_dim), cast to their dtype, before anything
    # else sees them (the embedding is initialised, and tied, at the scale of the head).
    scale_embeddings: bool = False
    # Gemma 2: the logits become c * tanh(logits / c), so none exceeds c in size; 0 = off.
    logit_softcap: float = 0.0

    @property
    def head_dim(self):
        return self.emb_dim // self.n_heads


@dataclass(frozen=True)
class ComponentChoice:
    kind: str
    name: str
    params: dict  # the declared defaults with the spec's values merged over them


@dataclass
class Spec:
    name: str
    seed: int
    tokenizer: str
    model: ModelConfig
    components: dict  # kind -> ComponentChoice, in COMPONENT_KINDS order
    # The ``layers:`` entries (explorer.spec.layers.LayerRule), in order: per-layer overrides.
    layers: tuple = ()
    # Module names and absolute .py paths (a path in a file is resolved against that file's folder).
    plugins: tuple = ()
    analyses: dict = field(default_factory=dict)  # analysis name -> options
    description: str = ""
    source: str = ""  # the file it was read from
    overrides: tuple = ()  # the ``--set KEY=VALUE`` texts applied after reading it, in order
    # Hugging Face config.json fields read as if absent wherever the spec meets one (its own
    # conversion, the config.json of weights loaded into it): ``--ignore-config-field``.
    ignore_config_fields: tuple = field(default=(), compare=False)
    # The plugins the spec was validated against; build_model resolves components through it.
    plugin_manager: object = field(default=None, repr=False, compare=False)

    def components_at(self, layer):
        """``{kind: ComponentChoice}`` of block ``layer``: the spec-wide choices with the
        ``layers:`` entries that select it applied in order."""
        return resolve_layer(self.components, self.layers, layer, self.model.n_layers)

    def layer_components(self):
        """``components_at(i)`` for every block, in order."""
        return resolve(self.components, self.layers, self.model.n_layers)

    def to_dict(self, relative_to=None):
        """The resolved spec as plain data (what the report prints and checkpoints carry).

        With ``relative_to`` (a folder), plugin file paths are written relative to it, so a
        checkpoint moved together with its plugin files still finds them.
        """
        m = self.model
        doc = {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "tokenizer": self.tokenizer,
            "model": {
                "vocab_size": m.vocab_size, "context_length": m.context_length,
                "emb_dim": m.emb_dim, "n_heads": m.n_heads, "n_layers": m.n_layers,
                "qkv_bias": m.qkv_bias,
                "dropout": {p: getattr(m.dropout, p) for p in DROPOUT_PLACES},
                "scale_embeddings": m.scale_embeddings, "logit_softcap": m.logit_softcap,
            },
            "components": {k: {"name": c.name, **c.params} for k, c in self.components.items()},
            "plugins": [_relative(p, relative_to) for p in self.plugins],
            "analyses": copy.deepcopy(self.analyses),
        }
        if self.layers:  # only then: specs without layers keep their old documents
            doc["layers"] = [rule.to_dict() for rule in self.layers]
        return doc


def _relative(entry, folder):
    if folder is None or not os.path.isabs(entry):
        return entry  # a module name
    return os.path.relpath(entry, os.path.abspath(folder))
