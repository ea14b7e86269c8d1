"""Weights in and out: explorer's own checkpoints, and every registered checkpoint format.

One concern a module:

- ``files``: which files a path means; safetensors, or torch files read with
  ``weights_only=True``; anything else named for what it is.
- ``formats``: the registered :class:`explorer.CheckpointFormat` plugins (Hugging Face GPT-2 and
  the book's ``model.pth`` are built-in plugins): which one reads a file, calls into them.
- ``native``: explorer's own safetensors checkpoint, the resolved spec in its metadata.
- ``fit`` and ``hints``: whether the tensors fit the model, and which spec key would make the
  first misfit fit (found by rebuilding on the meta device, not by knowing component names).
- ``diagnostics``: :class:`Mismatch` records and the one place they are worded.
- ``loading``, ``export``, ``writing``: build a model and load into it; export; atomic file
  writes.
- ``resolved``: component parameters as the built model has them (a derived default as the
  number it derives), for checks of a checkpoint's config against a spec.

One layer above the model: ``explorer.model`` builds and never imports this package.
"""

from .diagnostics import Mismatch
from .export import check_exportable, export, export_format, export_hf, targets
from .files import CheckpointFile, read_file, weight_files
from .loading import load_model, load_weights
from .native import SPEC_METADATA_KEY, save_checkpoint, spec_from_checkpoint
from .resolved import resolved_layers

__all__ = ["CheckpointFile", "Mismatch", "SPEC_METADATA_KEY", "check_exportable", "export",
           "export_format", "export_hf", "load_model", "load_weights", "read_file", "resolved_layers",
           "save_checkpoint", "spec_from_checkpoint", "targets", "weight_files"]
