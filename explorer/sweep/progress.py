"""The driver's progress line on stderr: runs done, failed, running, pending, and time left.

Rewritten in place on a terminal; silent when stderr is not one (logs, CI) or when the output
is JSON.
"""

import sys
import time


def duration(seconds):
    """``3725`` -> ``"1h02m"``, ``95`` -> ``"1m35s"``, ``7`` -> ``"7s"``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    def __init__(self, name, enabled=None, stream=None):
        self.name = name
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self.seconds = []  # own times of the runs finished by this driver
        self.width = 0

    def finished(self, outcome):
        if outcome.get("seconds") is not None:
            self.seconds.append(outcome["seconds"])

    def line(self, counts, slots):
        total = sum(counts.values())
        left = counts["pending"] + counts["running"]
        text = (f"sweep {self.name}: {counts['done'] + counts['failed']}/{total} finished "
                f"({counts['done']} done, {counts['failed']} failed), {counts['running']} "
                f"running, {counts['pending']} pending")
        if self.seconds and left:
            mean = sum(self.seconds) / len(self.seconds)
            text += f"; about {duration(mean * left / max(1, slots))} left"
        elif left:
            text += f"; {duration(time.monotonic() - self.started)} so far"
        return text

    def update(self, counts, slots):
        if not self.enabled:
            return
        text = self.line(counts, slots)
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)

    def close(self):
        if self.enabled and self.width:
            self.stream.write("\n")
            self.stream.flush()
