"""The peak resident memory of one command, whatever the test process did before it.

Two process-global figures look right alone and are wrong beside other tests (Linux):
- ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is the largest peak of ANY child this process ever
  waited for: another test's heavy subprocess in the same pytest worker shows up in it.
- even one child's own ``ru_maxrss`` (``os.wait4``) starts from its parent's peak: exec keeps
  the larger of the old address space's high-water mark and the new one's, and a child made
  by fork/vfork/posix_spawn execs from its parent's memory. A pytest worker that loaded torch
  and Hugging Face models passes its gigabytes on to every command it starts.
So the command is started by a small launcher (a fresh ``python -c``, some 10 MiB), and the
launcher reads the command's own ``ru_maxrss`` with ``os.wait4``: the launcher's peak is the
floor, not the test process's.
"""

import json
import os
import subprocess
import sys
import tempfile

# argv: REPORT_PATH COMMAND...; the command inherits the launcher's stdin, stdout and stderr.
_LAUNCHER = """import json, os, subprocess, sys
command = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(command.pid, 0)
with open(sys.argv[1], "w") as report:
    json.dump([os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024], report)
"""


def run_with_peak_rss(argv, **run_kwargs):
    """``subprocess.run(argv, **run_kwargs)`` through the launcher: (the completed process, with
    the command's own return code, and the command's peak resident bytes)."""
    fd, report_path = tempfile.mkstemp(suffix=".json", prefix="peak-rss-")
    os.close(fd)
    try:
        done = subprocess.run([sys.executable, "-c", _LAUNCHER, report_path, *map(str, argv)],
                              **run_kwargs)
        with open(report_path) as report:
            done.returncode, peak_bytes = json.load(report)
    finally:
        os.unlink(report_path)
    return done, peak_bytes
