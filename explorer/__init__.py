"""explorer: a GPT architecture explorer.

    >>> import explorer
    >>> spec = explorer.load_spec("specs/gpt2_small.yaml")
    >>> model = explorer.build_model(spec, seed=123)
    >>> report = explorer.analyze(spec, only=["params", "memory"])

Importing this package does not import torch; the functions that need it import it when called.
"""

from .registry.components import (COMPONENT_KINDS, Analysis, Chart, CheckpointFormat, Component,
                                  ConfigConverter, Param)
from .registry.components import resolve as _resolve  # "module:attr" -> the attribute
from .registry.trackers import Tracker
from .errors import (ExplorerError, NotApplicable, ParamError, PluginError, ResourceError,
                     SpecError, UnknownNameError)
from .registry.plugin_manager import get_plugin_manager, hookimpl
from .spec.loading import ComponentChoice, Dropout, ModelConfig, Spec, load_spec

__version__ = "0.1.0"

# name -> module that defines it; imported on first access (most of them import torch).
_LAZY = {
    "build_model": "explorer.model.gpt",
    "BuildContext": "explorer.model.gpt",
    "GPTModel": "explorer.model.gpt",
    "inference_layout": "explorer.model.gpt",
    "analyze": "explorer.analysis.runner",
    "compare": "explorer.analysis.comparison",
    "AnalysisContext": "explorer.analysis.runner",
    "list_specs": "explorer.analysis.shipped",
    "list_sweeps": "explorer.sweep",
    "generate": "explorer.model.generation",
    "generate_stream": "explorer.model.generation",
    "get_tokenizer": "explorer.model.tokenizer",
    "load_model": "explorer.weights",
    "load_weights": "explorer.weights",
    "save_checkpoint": "explorer.weights",
    "export_hf": "explorer.weights",
    "spec_from_checkpoint": "explorer.weights",
    "Mismatch": "explorer.weights",
    "train": "explorer.training.loop",
    "TrainConfig": "explorer.training.settings",
    "load_sweep": "explorer.sweep",
    "run_sweep": "explorer.sweep",
    "sweep_report": "explorer.sweep",
    "sweep_status": "explorer.sweep",
    "spec_from_hf": "explorer.spec.hf_config",
}

__all__ = [
    "COMPONENT_KINDS", "Analysis", "Chart", "CheckpointFormat", "Component", "ConfigConverter",
    "Param", "Tracker", "ExplorerError", "NotApplicable", "ParamError", "PluginError",
    "ResourceError", "SpecError", "UnknownNameError",
    "get_plugin_manager", "hookimpl", "ComponentChoice", "Dropout", "ModelConfig", "Spec",
    "load_spec", *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        return _resolve(f"{_LAZY[name]}:{name}")
    raise AttributeError(f"module 'explorer' has no attribute {name!r}")
