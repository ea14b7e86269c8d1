"""A training run's memory: the check before anything is allocated, and the allocator setting
that makes the resident peak the bytes the run holds.

The prediction is :func:`explorer.measure.resources.training_need`, the one the ``train``
analysis and sweeps use too.
"""

import ctypes
import functools
import sys

from explorer.measure.available import memory_available_on
from explorer.measure.resources import refuse_unless_fits, training_need, weight_bytes
from explorer.training.devices import resolve_device

# glibc's mallopt parameter M_MMAP_THRESHOLD, and the size from which an allocation gets a
# mapping of its own that goes back to the system when it is freed.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 2**20


def check_memory(model, spec, config):
    """The run's :class:`~explorer.measure.resources.Need`, or a :class:`ResourceError` if it
    would not fit on the device it trains on. ``model`` exists already: its bytes there are
    counted as available rather than twice."""
    need = training_need(spec, config, what="train")
    device = resolve_device(config.device, "train.device", "device: cpu")
    available = memory_available_on(device)
    on_device = [t for t in (*model.parameters(), *model.buffers()) if t.device.type == device.type]
    if available is not None and on_device:
        available += weight_bytes(model)
    refuse_unless_fits(need, available, spec.source or spec.name)
    return need


@functools.cache  # once per process
def map_large_allocations():
    """Have glibc give every allocation of MMAP_THRESHOLD bytes or more (a tensor of 256K
    floats) its own mapping, returned to the system when it is freed (``mallopt``); nothing
    off Linux or off glibc.

    By default glibc raises that threshold to 32 MiB as large blocks are freed, after which a
    step's activations come from its heap, whose holes it keeps: on the 4-layer gpt2_small run
    of README's training section 250-400 MiB above what the step holds. Mapped, the resident
    peak is what the step holds (the prediction), at the same CPU time per step (the kernel
    zeroes fresh pages either way: glibc trims its heap too)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
