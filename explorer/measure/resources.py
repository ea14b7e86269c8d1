"""Predicting what an analysis will allocate, and refusing before allocating what would not fit.

A prediction is a :class:`Need`: the parts held throughout (weights, gradients, AdamW moments)
plus the largest of the phases the analysis goes through one after another (a training step's
saved activations and logits; an evaluation pass's logits). Each part is an exact figure from
the model's shapes or from the activations measured on fake tensors (explorer.measure.activations), so
the refusal names the same numbers the memory analysis reports.
"""

import os
import re
from dataclasses import dataclass

from explorer.errors import ExplorerError, ResourceError

# The share of the available memory a prediction may use: the rest is left for what it does not
# count (the Python heap, the tokenizer, allocator slack).
USABLE = 0.9
ENV_AVAILABLE = "EXPLORER_AVAILABLE_MEMORY"
_UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "kb": 2**10, "m": 2**20, "mib": 2**20,
          "mb": 2**20, "g": 2**30, "gib": 2**30, "gb": 2**30, "t": 2**40, "tib": 2**40, "tb": 2**40}


def parse_size(text):
    """Bytes from ``"6GiB"``, ``"512 MiB"``, ``"1e9"`` (units are powers of 2), or ValueError."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", text.lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(text)
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def available_memory():
    """Bytes of memory available to a new allocation now, or None if unknown.

    ``EXPLORER_AVAILABLE_MEMORY`` (bytes, or a size such as ``6GiB``) overrides what the system
    reports: to keep explorer below a share of a machine, or to test a refusal.
    """
    override = os.environ.get(ENV_AVAILABLE)
    if override:
        try:
            return parse_size(override)
        except ValueError:
            raise ExplorerError(f"{ENV_AVAILABLE}: {override!r} is not a size; write bytes or a "
                                "number with a unit, e.g. 6GiB or 512MiB") from None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_available_on(device):
    """Bytes free on ``device`` (a ``torch.device``) now: the GPU's free memory on CUDA
    (``torch.cuda.mem_get_info``), else :func:`available_memory` (the host's; MPS shares it).
    ``EXPLORER_AVAILABLE_MEMORY`` overrides both."""
    if device.type == "cuda" and not os.environ.get(ENV_AVAILABLE):
        import torch

        return torch.cuda.mem_get_info(device)[0]
    return available_memory()


def size(n):
    """Bytes for a message: ``622 MiB``, ``1.2 GiB``."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.0f} MiB"
    if n >= 2**10:
        return f"{n / 2**10:.0f} KiB"
    return f"{n} bytes"


@dataclass(frozen=True)
class Part:
    """One figure of a prediction: ``bytes`` per copy, ``copies`` of it."""

    name: str
    bytes: int
    copies: int = 1
    note: str = ""  # how it was sized, e.g. "at batch 8 x 1024"

    @property
    def total(self):
        return self.bytes * self.copies

    def __str__(self):
        copies = f" x {self.copies} copies" if self.copies > 1 else ""
        note = f" {self.note}" if self.note else ""
        return f"{self.name} {size(self.bytes)}{copies}{note}"


@dataclass(frozen=True)
class Need:
    """What an analysis will hold at its peak.

    ``parts`` are held throughout; ``phases`` happen one after another, so only the largest
    counts. ``lower`` says which options make it smaller.
    """

    what: str
    parts: tuple
    lower: str
    phases: tuple = ()

    def peak_phase(self):
        return max(self.phases, key=lambda phase: sum(p.total for p in phase), default=())

    @property
    def total(self):
        return sum(p.total for p in (*self.parts, *self.peak_phase()))

    def __str__(self):
        parts = ", ".join(str(p) for p in (*self.parts, *self.peak_phase()) if p.total)
        return f"{self.what} needs about {size(self.total)} ({parts})"


def refuse_unless_fits(need, available, source):
    """Raise :class:`ResourceError` unless ``need`` fits in USABLE of ``available`` bytes."""
    if available is None or need.total <= USABLE * available:
        return
    kept = "" if need.total > available else f" and {1 - USABLE:.0%} of it is kept free"
    raise ResourceError(f"{source}: {need} but only {size(available)} is available{kept}; "
                        f"{need.lower}")


def training_need(what, lower, *, weights, parameters, activations, batch_size, seq_len,
                  logits_per_token, copies=1, optimizer=True):
    """A forward/backward (and optimizer step) of the LM loss: the parts and the step's phase.

    ``weights``: bytes of one copy of the model (parameters and buffers); ``parameters``: bytes
    of its parameters (gradients and each AdamW moment take as much); ``activations``: bytes
    autograd saves at batch 1 (scaled by ``batch_size``: an upper bound, the few tensors that do
    not grow with the batch are counted once per sequence); ``logits_per_token``: bytes of one
    position's logits. Besides what autograd saves, a step holds the logits (B, T, V) and, at the
    start of backward, two gradients of their size (of the log-probabilities and of the logits).
    """
    parts = [Part("weights", weights, copies), Part("gradients", parameters)]
    if optimizer:
        parts.append(Part("AdamW", 2 * parameters))
    step = (Part("activations", activations * batch_size, note=f"at batch {batch_size} x {seq_len}"),
            Part("logits and their gradients", 3 * logits_per_token * batch_size * seq_len))
    return Need(what, tuple(parts), lower, (step,))
