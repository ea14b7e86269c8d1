"""How the benchmarks time things: one process, round-robin turns, medians, and a guard against
a shared machine (runs during which other processes kept the cores busy are taken again).

Used by benchmarks/run.py and its parts (training.py, prototypes.py).
"""

import gc
import os
import statistics
import sys
import time


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def _cpu_clock():
    """(wall s, CPU s all processes spent busy, CPU s this process spent); None off Linux."""
    import resource

    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return None
    busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    me = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), busy, me.ru_utime + me.ru_stime


def timed(fn):
    """(seconds, share of the cores other processes used meanwhile, or None) of one call."""
    before = _cpu_clock()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    after = _cpu_clock()
    if before is None or after is None:
        return seconds, None
    others = (after[1] - before[1]) - (after[2] - before[2])
    return seconds, max(others, 0.0) / ((after[0] - before[0]) * os.cpu_count())


# Runs during which other processes used more than this share of the cores are taken again.
NOISE = 0.10
GUARD = {"noise": NOISE}  # run.py --max-others sets it: on a machine shared on purpose
RETRIES = 3
NOISY_RUNS = []  # (case, seconds, others' share) of every run thrown away or kept noisy


def round_robin(cases, repeats, warmup=1):
    """Run every case ``warmup`` times, then ``repeats`` times in turn; name -> seconds list.

    Turns alternate direction (a, b, c, c, b, a, ...) so no case always follows the same one.
    A run during which other processes kept more than GUARD["noise"] of the cores busy (from
    /proc/stat, minus this process's own CPU time) is taken again, up to RETRIES times, after
    waiting for the machine to quieten; a shared machine otherwise gives runs several times
    too slow (two torch threads on two busy cores wait on each other at every parallel op).
    """
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times = {name: [] for name in cases}
    for r in range(repeats):
        names = list(cases) if r % 2 == 0 else list(reversed(cases))
        for name in names:
            for attempt in range(RETRIES + 1):
                gc.collect()
                seconds, others = timed(cases[name])
                if others is None or others <= GUARD["noise"]:
                    break
                NOISY_RUNS.append({"case": name, "seconds": seconds, "others": others,
                                   "kept": attempt == RETRIES})
                if attempt < RETRIES:
                    wait_quiet(60)
            times[name].append(seconds)
    return times


def cpu_busy(seconds=1.0):
    """Fraction of all cores busy over ``seconds`` (from /proc/stat), or None off Linux.

    Called while this process idles, so it is the load other processes put on the machine.
    """
    def sample():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return None
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_quiet(limit_s, threshold=None):
    """Wait up to ``limit_s`` seconds for other processes to leave the cores idle (busy at
    most ``threshold``, default the guard's share plus 5 points)."""
    threshold = GUARD["noise"] + 0.05 if threshold is None else threshold
    start = time.perf_counter()
    busy = cpu_busy(0.5)
    while busy is not None and busy > threshold and time.perf_counter() - start < limit_s:
        log(f"  machine {busy:.0%} busy with other processes; waiting")
        time.sleep(5)
        busy = cpu_busy()
    return busy


PEAK_N = 4096
PEAK = "matmul 4096^3"  # the case name of the peak among the models' cases


def peak_case():
    """A 4096^3 fp32 torch.mm, the peak MFU divides by. Timed as one more case among the models
    it divides, it is measured under the same load (a shared machine drifts from minute to
    minute)."""
    import torch

    a, b = torch.randn(PEAK_N, PEAK_N), torch.randn(PEAK_N, PEAK_N)
    return lambda: torch.mm(a, b)


def peak_flops(seconds):
    """FLOP/s of the peak case from its runs' ``seconds``: 2*4096^3 / the median."""
    return 2 * PEAK_N ** 3 / median(seconds)


def matmul_peak(repeats):
    """fp32 FLOP/s of a 4096^3 torch.mm: 2*4096^3 / median seconds."""
    times = round_robin({"mm": peak_case()}, repeats)["mm"]
    return {"n": PEAK_N, "seconds": times, "flops_per_s": peak_flops(times)}
