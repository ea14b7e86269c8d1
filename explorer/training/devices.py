"""Devices and dtypes: names checked without torch, then resolved against what torch can use.

``--device auto|cpu|cuda|cuda:N|mps`` and ``--dtype float32|bfloat16|float16`` (also
``TrainConfig.device`` / ``dtype``). :func:`check_device_name` and ``DTYPE_NAMES`` validate
the spelling and import nothing, so spec and sweep-file validation stay torch-free;
:func:`resolve_device` imports torch and refuses, in one line, a device this torch cannot use,
before anything heavy runs. ``auto`` picks cuda, then mps, then cpu.

Mixed precision, as torch.amp does it: the weights stay float32 (the master copy the optimizer
updates), forwards run under :func:`autocast` in the lower dtype, and float16 training scales
the loss with a ``GradScaler`` (:func:`grad_scaler`) so small gradients do not underflow.
"""

import contextlib
import re

from explorer.errors import ExplorerError

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPE_NAMES = ("float32", "bfloat16", "float16")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(value):
    """Return ``value`` if it spells a device, else None (no torch)."""
    return value if isinstance(value, str) and _DEVICE.match(value) else None


def resolve_dtype(name, where="--dtype"):
    """``name`` if it is a dtype explorer computes in, else a one-line :class:`ExplorerError`."""
    if name not in DTYPE_NAMES:
        raise ExplorerError(f"{where}: {name!r} is not a dtype; use one of "
                            f"{', '.join(DTYPE_NAMES)}")
    return name


def resolve_device(name, where="--device", instead="--device cpu"):
    """The ``torch.device`` for ``name``, or an :class:`ExplorerError` of one line that starts
    with ``where`` and says why torch cannot use it here (built without that backend, or no such
    device visible) and what to use ``instead``. ``auto`` is cuda if available, else mps, else
    cpu. A misspelt name is refused before torch is imported."""
    if check_device_name(name) is None:
        raise ExplorerError(f"{where}: {name!r} is not a device; use one of "
                            f"{', '.join(DEVICE_NAMES)}")
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available(torch) else "cpu")
    kind, _, index = name.partition(":")
    if kind == "cuda":
        if not torch.backends.cuda.is_built():
            raise ExplorerError(f"{where} {name}: cuda requested but torch was built without "
                                f"CUDA (torch {torch.__version__}); use {instead}")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise ExplorerError(f"{where} {name}: cuda requested but no CUDA device is visible "
                                f"(check the driver and CUDA_VISIBLE_DEVICES); use {instead}")
        if index and int(index) >= count:
            raise ExplorerError(f"{where} {name}: cuda requested but only {count} CUDA "
                                f"device{'s are' if count > 1 else ' is'} visible "
                                f"(cuda:0..cuda:{count - 1})")
    if kind == "mps":
        if not torch.backends.mps.is_built():
            raise ExplorerError(f"{where} {name}: mps requested but torch was built without MPS "
                                f"(torch {torch.__version__}); use {instead}")
        if not torch.backends.mps.is_available():
            raise ExplorerError(f"{where} {name}: mps requested but no MPS device is available "
                                f"(it needs Apple silicon and macOS 12.3 or later); use {instead}")
    return torch.device(name)


def _mps_available(torch):
    return torch.backends.mps.is_built() and torch.backends.mps.is_available()


def torch_dtype(name):
    """``"bfloat16"`` -> ``torch.bfloat16``."""
    import torch

    return getattr(torch, name)


def autocast(device, dtype):
    """Mixed precision for a forward: ``torch.autocast`` in ``dtype`` (a name or torch dtype)
    on ``device``'s type; nothing for float32."""
    import torch

    dtype = torch_dtype(dtype) if isinstance(dtype, str) else dtype
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device, dtype):
    """A ``torch.amp.GradScaler`` for ``device``, enabled only for float16 (bfloat16 has
    float32's exponent range: its gradients do not underflow)."""
    import torch

    dtype = torch_dtype(dtype) if isinstance(dtype, str) else dtype
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def peak_memory(device):
    """Bytes allocated at the peak since the last :func:`reset_peak_memory` on a CUDA device
    (``torch.cuda.max_memory_allocated``); None elsewhere (the CPU and MPS keep no peak)."""
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device)


def reset_peak_memory(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def synchronize(device):
    """Wait for the device's queued work (timings on an accelerator need it)."""
    import torch

    if device.type in ("cuda", "mps"):
        torch.get_device_module(device.type).synchronize()
