"""How many cores the rest of the machine leaves free, measured between calls, and torch's threads set to match.

Why: torch's OpenMP workers wait for each other at the end of every parallel region. When another busy process
shares the cores, a worker that loses its core holds every region up until the scheduler gives it back, and the
GPTQ loops run thousands of small regions per layer: SmolLM2 blocks took 30x longer with two threads beside a C++
build than with one thread. With --threads auto, compression re-measures the free cores between blocks (Linux
/proc/stat: the machine's busy time minus this process's own) and uses that many threads, at least one and at most
the CPUs this process may run on. It is not the default: torch's sums depend on the thread count, so the last bits
of a result would then depend on the machine's load. The default instead bounds how long the workers spin
(bounded_spinning), which keeps the thread count and so the results.
"""

from __future__ import annotations

import os
import time

# [choice] iterations torch's OpenMP workers (libgomp: torch's own regions, MKL's and oneDNN's) spin at the end of a
# parallel region before they sleep, unless the user set a policy. libgomp's default, 300,000, is what collapsed on a
# shared machine: the waiting workers kept their cores from the one that was behind. Measured (bench/busy_machine.py,
# SmolLM2 2 blocks): 1000 is as fast as the default on a quiet machine, and beside a busy process takes 1.3x the time
# of --threads 1 alone, where the default took 1.8-2.0x; OMP_WAIT_POLICY=PASSIVE (no spinning) was 1.1x busy but 25 %
# slower quiet. The thread count, and so every sum, stays as it was: results do not depend on the load.
SPIN_COUNT = "1000"


def bounded_spinning() -> None:
    """Set GOMP_SPINCOUNT (SPIN_COUNT) unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set. Effective only before torch
    is imported (libgomp reads it once, when it loads): the command line calls it first."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT


def _machine_busy_seconds() -> float | None:
    """CPU seconds all CPUs have spent busy since boot (/proc/stat's first line), None where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    steal = int(fields[8]) if len(fields) > 8 else 0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class FreeCores:
    """free(): the cores other processes left idle since the previous call (or since construction)."""

    def __init__(self) -> None:
        self._mark()

    def _mark(self) -> None:
        self._wall, self._busy, self._own = time.monotonic(), _machine_busy_seconds(), _own_seconds()

    def free(self) -> float | None:
        """usable CPUs minus the cores other processes kept busy on average since the last call; None when it
        cannot be measured (no /proc/stat, or no time has passed)."""
        wall, busy, own = self._wall, self._busy, self._own
        self._mark()
        elapsed = self._wall - wall
        if busy is None or self._busy is None or elapsed <= 0.05:
            return None
        others = max(0.0, (self._busy - busy) - (self._own - own)) / elapsed
        return max(0.0, min(usable_cpus(), os.cpu_count() or 1) - others)


class ThreadGovernor:
    """Sets torch's intra-op threads to the free cores each time adjust() is called; restores them on close."""

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self._before = torch.get_num_threads()
        self._cores = FreeCores()

    def adjust(self) -> int:
        """The thread count now in use: round(free cores), at least 1, at most the usable CPUs."""
        free = self._cores.free()
        if free is not None:
            self._torch.set_num_threads(max(1, min(usable_cpus(), round(free))))
        return self._torch.get_num_threads()

    def close(self) -> None:
        self._torch.set_num_threads(self._before)
