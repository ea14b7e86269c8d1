"""The typed spec: what ``load_spec`` returns once a YAML spec is validated.

Plain frozen dataclasses (litgpt-style): everything after validation can trust these values.
"""

import copy
import os
from dataclasses import asdict, dataclass, field, fields

from explorer.registry.params import Param, option
from explorer.spec.layers import resolve, resolve_layer

# Seeds fit a signed 64-bit integer: torch's generators, SQLite's INTEGER (a sweep's store).
MAX_SEED = 2**63 - 1
SEED = Param("seed", int, 123, "the seed of the initial weights (and of training and sampling)",
             min=0, max=MAX_SEED)
PARAMETRIZATIONS = ("standard", "mup")
_RATE = {"min": 0, "max": 1, "exclusive_max": True, "valid": "a dropout rate in [0, 1)"}


@dataclass(frozen=True)
class Dropout:
    embedding: float = option("after the token + position embeddings", 0.0, **_RATE)
    attention: float = option("on the attention weights", 0.0, **_RATE)
    residual: float = option("on each sublayer's output, before it joins the shortcut", 0.0,
                             **_RATE)


DROPOUT_PLACES = tuple(f.name for f in fields(Dropout))


@dataclass(frozen=True)
class ModelConfig:
    """A spec's ``model:`` section. Each field is an option
    (:func:`explorer.registry.params.option`): the keys a spec may write, their checks when it
    loads and ``to_dict`` all come from these fields, so a new key is one new field."""

    # The sizes' maxima: far beyond any real model (GPT-3 175B: 96 layers, 12,288 wide), but
    # small enough that even assembling the model on the meta device finishes in seconds.
    vocab_size: int = option("rows of the token embedding and the output head", min=1,
                             max=2**24)
    context_length: int = option("the longest sequence the model accepts", min=1, max=2**21)
    emb_dim: int = option("the width of the residual stream", min=1, max=2**17)
    n_heads: int = option("attention heads per block", min=1, max=2**12)
    n_layers: int = option("transformer blocks", min=1, max=1024)
    qkv_bias: bool = option("biases on the query, key and value projections", False)
    # Numerics-only: the weights mean the same at any rate (a checkpoint loads under any).
    dropout: Dropout = option("dropout rates: {embedding, attention, residual}", factory=Dropout,
                              shorthand="drop_rate", numerics_only=True)
    # Gemma: multiply the token embeddings by sqrt(emb_dim), cast to their dtype, before anything
    # else sees them (the embedding is initialised, and tied, at the scale of the head).
    scale_embeddings: bool = option("scale the token embeddings by sqrt(emb_dim) (Gemma)", False)
    # Gemma 2: the logits become c * tanh(logits / c), so none exceeds c in size; 0 = off.
    logit_softcap: float = option("soft-cap the final logits at this size (0: off; Gemma 2: 30)",
                                  0.0, min=0, valid="0 for no final-logit soft-capping, e.g. "
                                                    "30.0 (Gemma 2)")
    # How initialisation, learning rates and the two multipliers depend on the width:
    # explorer.model.parametrization (μP: Yang et al. 2022, Tensor Programs V).
    parametrization: str = option("standard, or mup: μP scaled from base_width (init, Adam "
                                  "learning rates, output multiplier, 1/d attention)", "standard",
                                  choices=PARAMETRIZATIONS,
                                  valid="standard or mup (mup also needs model.base_width)")
    base_width: int = option("the emb_dim the hyperparameters were tuned at, which μP scales "
                             "from (at it, μP is the standard model); 0 = none", 0, min=0,
                             max=2**17)

    @property
    def head_dim(self):
        return self.emb_dim // self.n_heads

    @property
    def width_multiplier(self):
        """emb_dim / base_width under μP (what its scalings divide or multiply by); 1.0 under
        the standard parametrization, whose numbers do not depend on a base."""
        if self.parametrization != "mup":
            return 1.0
        return self.emb_dim / self.base_width

    def to_dict(self):
        """The model keys as plain data, in field order (dropout as a mapping). The μP keys only
        under μP: a standard spec's document (what reports print, checkpoints carry and a
        sweep's run keys hash) stays what it was before they existed."""
        doc = asdict(self)
        if self.parametrization == "standard":
            del doc["parametrization"], doc["base_width"]
        return doc


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
        doc = {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "tokenizer": self.tokenizer,
            "model": self.model.to_dict(),
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
