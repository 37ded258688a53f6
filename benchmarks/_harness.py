"""What every benchmark shares: interleaved timing, peak memory in a fresh process, tables, the machine.

Timing. Each method is run once to warm up (and to size its repeats), then the methods take turns, one call
each per round, until every method has its repeats: a burst of load from another process then slows all of
them alike instead of one. The figure quoted is the median; the best is kept beside it.

Memory. Peak memory is measured in a fresh Python process per (method, size): the process builds its inputs,
runs a warm-up forward+backward, resets the kernel's high-water mark of its resident memory
(``/proc/self/clear_refs``), runs the method once and reports how far the high-water mark rose. glibc is told
to map every allocation of 64 KiB or more on its own (``MALLOC_MMAP_THRESHOLD_``), so freed tensors leave
the resident set at once and the figure is the peak of live memory, not of what the allocator kept.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Timing:
    """Seconds per call, one sample per repeat."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)


def time_interleaved(
    methods: Mapping[str, Callable[[], object]],
    *,
    budget_s: float = 1.0,
    min_repeats: int = 5,
    max_repeats: int = 200,
    slow_s: float = 5.0,
) -> dict[str, Timing]:
    """Median-ready samples for each method, taken in rounds (one call of each method per round).

    A method gets about ``budget_s`` of repeats (at least ``min_repeats``, at most ``max_repeats``). A method
    whose first call took longer than ``slow_s`` keeps that call as a sample (warming up is a negligible
    part of it) and gets 3 samples in all; past 30 s, the first call is the only sample.
    """
    first: dict[str, float] = {}
    for name, fn in methods.items():
        started = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - started
    wanted = {}
    timings = {name: Timing() for name in methods}
    for name, t in first.items():
        if t > slow_s:
            wanted[name] = 1 if t > 30 else 3
            timings[name].samples.append(t)
        else:
            wanted[name] = max(min_repeats, min(max_repeats, int(budget_s / max(t, 1e-6))))
    while True:
        pending = [name for name in methods if len(timings[name].samples) < wanted[name]]
        if not pending:
            return timings
        for name in pending:
            started = time.perf_counter()
            methods[name]()
            timings[name].samples.append(time.perf_counter() - started)


def power_law_estimate(sizes: Sequence[float], seconds: Sequence[float], size: float) -> float:
    """Extrapolate a time to ``size`` from the two largest measured sizes, t ~ c * size**k."""
    (p1, t1), (p2, t2) = sorted(zip(sizes, seconds))[-2:]
    k = math.log(t2 / t1) / math.log(p2 / p1)
    return t2 * (size / p2) ** k


# --------------------------------------------------------------------------------------------------------
# Peak memory in a fresh process


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        match = re.search(rf"^{key}:\s+(\d+) kB", status.read(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def measure_here(fn: Callable[[], object]) -> int:
    """Bytes by which the resident high-water mark rises while ``fn`` runs (Linux; -1 elsewhere)."""
    try:
        baseline = _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset VmHWM to the current resident size
    except OSError:
        fn()
        return -1
    fn()
    return max(0, _status_kib("VmHWM") - baseline) * 1024


def peak_memory(target: str, *args: object, threads: int | None = None, timeout: float = 600) -> int | None:
    """Peak memory of one call of ``module:factory(*args)()`` in a fresh process, in bytes (None: failed).

    ``factory`` builds the inputs and returns the zero-argument callable to measure; it should have run
    whatever warms up lazily loaded machinery (autograd, vmap) so that only the method itself is measured.
    """
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * 1024), PYTHONPATH=str(ROOT))
    code = (
        "import json, sys, torch\n"
        f"torch.set_num_threads({threads or 0} or torch.get_num_threads())\n"
        "from benchmarks._harness import call_factory, measure_here\n"
        "fn = call_factory(sys.argv[1], json.loads(sys.argv[2]))\n"
        "print('PEAK', measure_here(fn))\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, target, json.dumps(list(args))],
            capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return None
    match = re.search(r"^PEAK (-?\d+)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not match or int(match.group(1)) < 0:
        return None
    return int(match.group(1))


def call_factory(target: str, args: Sequence[object]) -> Callable[[], object]:
    module, _, name = target.partition(":")
    factory = getattr(__import__(module, fromlist=[name]), name)
    return factory(*args)


# --------------------------------------------------------------------------------------------------------
# Formatting


def fmt_seconds(t: float | None) -> str:
    if t is None or not math.isfinite(t):
        return "—"
    if t >= 1:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.2f} ms"
    return f"{t * 1e6:.0f} µs"


def fmt_ratio(r: float | None, estimated: bool = False) -> str:
    if r is None or not math.isfinite(r):
        return "—"
    mark = "~" if estimated else ""
    if r >= 100:
        return f"{mark}{r:,.0f}×"
    if r >= 10:
        return f"{mark}{r:.1f}×"
    return f"{mark}{r:.2f}×"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n / 1024:.0f} KiB"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A Markdown table (``align``: one of l/r per column; numbers right-aligned by default)."""
    cells = [[str(c) for c in row] for row in rows]
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = (v.ljust(w) if a == "l" else v.rjust(w) for v, w, a in zip(values, widths, align))
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join(("-" * (w - 1) + ":") if a == "r" else "-" * w for w, a in zip(widths, align)) + " |"
    return "\n".join([line(list(headers)), rule, *(line(r) for r in cells)])


def machine() -> str:
    """One line naming what the numbers were measured on, and how busy it was."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            found = re.search(r"^model name\s*:\s*(.+)$", info.read(), re.MULTILINE)
        cpu = found.group(1).strip() if found else cpu
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}; load average {load}"
    )


def heading(title: str) -> None:
    print(f"\n## {title}\n", flush=True)
