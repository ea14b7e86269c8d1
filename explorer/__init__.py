"""explorer: a GPT architecture explorer.

    >>> import explorer
    >>> spec = explorer.load_spec("specs/gpt2_small.yaml")
    >>> model = explorer.build_model(spec, seed=123)
    >>> report = explorer.analyze(spec, only=["params", "memory"])

Importing this package does not import torch; the functions that need it import it when called.
"""

from .components import (COMPONENT_KINDS, Analysis, Chart, CheckpointFormat, Component,
                         ConfigConverter, Param)
from .errors import ExplorerError, ParamError, PluginError, ResourceError, SpecError
from .plugin_manager import get_plugin_manager, hookimpl
from .spec import ComponentChoice, Dropout, ModelConfig, Spec, load_spec

__version__ = "0.1.0"

# name -> module that defines it; imported on first access (most of them import torch).
_LAZY = {
    "build_model": "explorer.model",
    "BuildContext": "explorer.model",
    "GPTModel": "explorer.model",
    "inference_layout": "explorer.model",
    "analyze": "explorer.analysis",
    "compare": "explorer.comparison",
    "AnalysisContext": "explorer.analysis",
    "generate": "explorer.generation",
    "generate_stream": "explorer.generation",
    "get_tokenizer": "explorer.tokenizer",
    "load_weights": "explorer.weights",
    "save_checkpoint": "explorer.weights",
    "export_hf": "explorer.weights",
    "spec_from_checkpoint": "explorer.weights",
    "Mismatch": "explorer.weights",
    "train": "explorer.training",
    "TrainConfig": "explorer.train_config",
    "load_sweep": "explorer.sweep",
    "run_sweep": "explorer.sweep",
    "sweep_report": "explorer.sweep",
    "sweep_status": "explorer.sweep",
    "spec_from_hf": "explorer.hf_config",
}

__all__ = [
    "COMPONENT_KINDS", "Analysis", "Chart", "CheckpointFormat", "Component", "ConfigConverter",
    "Param", "ExplorerError", "ParamError", "PluginError", "ResourceError", "SpecError",
    "get_plugin_manager", "hookimpl", "ComponentChoice", "Dropout", "ModelConfig", "Spec",
    "load_spec", *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'explorer' has no attribute {name!r}")
