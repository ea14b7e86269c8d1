"""What produced a page: the command, the versions, the seed, the machine and the date.

Shown at the bottom of every page, so a page pasted into a chat still says where its numbers
came from. Versions are read from the installed distributions: no torch import.
"""

import datetime
import importlib.metadata
import os
import platform
import shlex
import sys


def _version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def command_line(argv=None):
    """``explorer ARGS...`` for the command line's ``argv``, as a shell would take it back;
    without it, this process's own command line (a script that calls the API)."""
    if argv is not None:
        return shlex.join(["explorer", *argv])
    return shlex.join([os.path.basename(sys.argv[0]) or "python", *sys.argv[1:]])


def provenance(command=None, seed=None, environment=None):
    """The provenance block: ``command`` (default: this process's command line), ``seed`` (an
    int, or a list of seeds for a sweep), and a report's ``environment`` (its torch version and
    thread count win over the installed ones: they are what the numbers were measured with)."""
    environment = environment or {}
    return {
        "command": command if command is not None else command_line(),
        "explorer": _version("explorer"),
        "torch": environment.get("torch") or _version("torch"),
        "python": platform.python_version(),
        "seed": seed,
        "machine": f"{platform.platform()}, {platform.machine()}, "
                   f"{os.cpu_count()} CPUs"
                   + (f", {environment['threads']} torch threads"
                      if environment.get("threads") else "")
                   + (f", device {environment['device']}" if environment.get("device") else ""),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
