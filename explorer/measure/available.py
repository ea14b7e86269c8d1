"""What memory a new allocation can have now: the smallest of what the machine
(``MemAvailable``), the process's memory cgroup (its limit less its usage) and its own limits
(``RLIMIT_AS`` less the address space it maps already) allow, or on CUDA the GPU's free memory;
``EXPLORER_AVAILABLE_MEMORY`` overrides them. What a piece of work needs is
:mod:`explorer.measure.resources`'s."""

import os
import re
from pathlib import Path

from explorer.errors import ExplorerError

ENV_AVAILABLE = "EXPLORER_AVAILABLE_MEMORY"
_UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "kb": 2**10, "m": 2**20, "mib": 2**20,
          "mb": 2**20, "g": 2**30, "gib": 2**30, "gb": 2**30, "t": 2**40, "tib": 2**40, "tb": 2**40}
# cgroup v1 writes "no limit" as the largest page-aligned counter (9223372036854771712).
_NO_CGROUP_LIMIT = 2**60
# The process's own limits, and the line of /proc/self/status that says how much of each it uses.
_RLIMITS = (("RLIMIT_AS", "VmSize"), ("RLIMIT_DATA", "VmData"))


def parse_size(text):
    """Bytes from ``"6GiB"``, ``"512 MiB"``, ``"1e9"`` (units are powers of 2), or ValueError."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", text.lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(text)
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def available_memory(meminfo="/proc/meminfo", cgroup="/proc/self/cgroup",
                     cgroup_root="/sys/fs/cgroup", status="/proc/self/status", getrlimit=None):
    """Bytes of memory available to a new allocation now, or None if unknown: the smallest of
    what the machine, the memory cgroup and the process's rlimits allow (:func:`memory_limits`;
    the paths and ``getrlimit`` are there for tests).

    ``EXPLORER_AVAILABLE_MEMORY`` (bytes, or a size such as ``6GiB``) overrides all three: to
    keep explorer below a share of a machine, or to test a refusal.
    """
    override = os.environ.get(ENV_AVAILABLE)
    if override:
        try:
            return parse_size(override)
        except ValueError:
            raise ExplorerError(f"{ENV_AVAILABLE}: {override!r} is not a size; write bytes or a "
                                "number with a unit, e.g. 6GiB or 512MiB") from None
    known = [v for v in memory_limits(meminfo, cgroup, cgroup_root, status, getrlimit).values()
             if v is not None]
    return min(known, default=None)


def memory_limits(meminfo="/proc/meminfo", cgroup="/proc/self/cgroup",
                  cgroup_root="/sys/fs/cgroup", status="/proc/self/status", getrlimit=None):
    """What each source allows a new allocation, in bytes (None: no limit, or unknown):
    ``machine`` (MemAvailable), ``cgroup`` (:func:`cgroup_available`) and ``rlimit``
    (:func:`rlimit_available`)."""
    return {"machine": machine_available(meminfo),
            "cgroup": cgroup_available(cgroup, cgroup_root),
            "rlimit": rlimit_available(status, getrlimit)}


def machine_available(meminfo="/proc/meminfo"):
    """The kernel's estimate of the memory a new program could use without swapping
    (``MemAvailable``), else the free pages; None if neither is known."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _read_int(path):
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):  # missing, "max", empty
        return None


def _inactive_file(folder, key):
    """Page cache the kernel reclaims before it counts against the limit (what kubelet leaves
    out of a container's working set)."""
    try:
        for line in (folder / "memory.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def cgroup_available(cgroup="/proc/self/cgroup", root="/sys/fs/cgroup"):
    """Bytes the process's memory cgroup still lets it use: the smallest ``limit - usage`` over
    its cgroup and the cgroups above it (a parent's limit binds its children), the usage less
    the reclaimable page cache. cgroup v2: ``memory.max`` and ``memory.current``; v1 (the
    ``memory`` controller's hierarchy): ``memory.limit_in_bytes`` and ``memory.usage_in_bytes``.
    None without a limit, or off Linux."""
    try:
        lines = Path(cgroup).read_text().splitlines()
    except OSError:
        return None
    found = []
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and not controllers:  # v2: one unified hierarchy
            base, limit_file, usage_file, cache = Path(root), "memory.max", "memory.current", \
                "inactive_file"
        elif "memory" in controllers.split(","):
            base, limit_file, usage_file, cache = Path(root) / "memory", "memory.limit_in_bytes", \
                "memory.usage_in_bytes", "total_inactive_file"
        else:
            continue
        names = [name for name in path.split("/") if name]
        for depth in range(len(names), -1, -1):  # the process's cgroup, then each parent
            folder = base.joinpath(*names[:depth])
            limit, usage = _read_int(folder / limit_file), _read_int(folder / usage_file)
            if limit is None or usage is None or limit >= _NO_CGROUP_LIMIT:
                continue
            found.append(max(0, limit - max(0, usage - _inactive_file(folder, cache))))
    return min(found, default=None)


def rlimit_available(status="/proc/self/status", getrlimit=None):
    """Bytes the process's own limits let it map still: ``RLIMIT_AS`` (``ulimit -v``) less its
    address space now (``VmSize``), and ``RLIMIT_DATA`` (``ulimit -d``) less its data
    (``VmData``); the smaller, or None when neither is set. Without /proc the whole limit."""
    try:
        import resource
    except ImportError:  # not a Unix
        return None
    getrlimit = getrlimit or resource.getrlimit
    used = {}
    try:
        with open(status) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in dict(_RLIMITS).values():
                    used[key] = int(value.split()[0]) * 1024  # "VmSize:  123 kB"
    except (OSError, ValueError, IndexError):
        pass
    found = []
    for limit_name, status_key in _RLIMITS:
        soft, _ = getrlimit(getattr(resource, limit_name))
        if soft != resource.RLIM_INFINITY and soft >= 0:
            found.append(max(0, soft - used.get(status_key, 0)))
    return min(found, default=None)


def memory_available_on(device):
    """Bytes free on ``device`` (a ``torch.device``) now: the GPU's free memory on CUDA
    (``torch.cuda.mem_get_info``), else :func:`available_memory` (the host's; MPS shares it).
    ``EXPLORER_AVAILABLE_MEMORY`` overrides both."""
    if device.type == "cuda" and not os.environ.get(ENV_AVAILABLE):
        import torch

        return torch.cuda.mem_get_info(device)[0]
    return available_memory()
