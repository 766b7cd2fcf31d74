"""The machine for the benchmarks: what it is (``cpu_and_memory``) and the CPU other processes
use while one is measured.

The machine is shared, so every figure records the cores other processes used meanwhile
(``Timer.other``), and each measurement can first wait for them to go idle (``wait_quiet``)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def cpu_and_memory() -> dict:
    """The CPU model (``lscpu``) and the RAM in GB, as far as they can be read."""
    info: dict = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
        mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
        info["memory_gb"] = round(int(mem) / 1024 / 1024)
    except (OSError, IndexError, ValueError):
        pass
    return info


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (from /proc/stat)."""
    try:
        f = Path("/proc/stat").read_text().split("\n")[0].split()[1:]
        v = [int(x) for x in f]
        busy = sum(v) - v[3] - (v[4] if len(v) > 4 else 0)  # minus idle and iowait
        return busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 0.0


def our_cpu() -> float:
    """CPU seconds of this process and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def other_load(seconds: float = 1.0) -> float:
    """Cores used by other processes over a short window."""
    b0, c0, t0 = busy_seconds(), our_cpu(), time.perf_counter()
    time.sleep(seconds)
    return max(0.0, (busy_seconds() - b0 - (our_cpu() - c0)) / (time.perf_counter() - t0))


def wait_quiet(limit: float, threshold: float = 0.3) -> float:
    """Wait up to ``limit`` seconds for other processes to use less than ``threshold`` cores."""
    if limit <= 0:
        return 0.0
    deadline = time.perf_counter() + limit
    load = other_load(0.3)
    while load > threshold and time.perf_counter() < deadline:
        load = other_load(1.0)
    return load


class Timer:
    """Wall seconds of a block (``seconds``), our CPU seconds (``cpu``), and the cores other
    processes used meanwhile (``other``)."""

    def __enter__(self):
        self.b0, self.c0, self.t0 = busy_seconds(), our_cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        ours = our_cpu() - self.c0
        self.other = max(0.0, (busy_seconds() - self.b0 - ours) / max(self.seconds, 1e-9))
        self.cpu = ours
