"""Scratch memory for the oracles' inner loops, kept per thread and reused from one call to the next.

Why keep it: glibc serves an allocation of more than its mmap threshold (128 KiB at start, raised up to
32 MiB as such blocks are freed) from fresh pages, mapped anew or carved from heap memory that an earlier
``free`` gave back to the system (it trims the top of the heap once more than twice that threshold lies free
there). Either way the kernel faults in and zeroes every page at its first touch, about 0.25 us per 4 KiB.
The structure-aware finite differences of ``models.two_layer`` write two 2 MiB buffers per call: faulting
them in took more than half of the call at P = 1e4 (2.36 ms a call with fresh buffers, 1.12 ms with these
kept; benchmarks/finite_differences.py, medians of interleaved repeats on 2 cores).

What is kept is bounded by what the callers ask for at once: they size their chunks to stay in cache (about
2^18 numbers per thread), not by the problem. A chunk can still be larger when a single unit of work is (one
hidden unit of a very large batch): a request beyond _KEEP_AT_MOST is served fresh and not kept, so a thread
never holds more than that. One block per thread and dtype, so that two threads checking at once never
share one; only CPU memory is kept, since CUDA's caching allocator already does this.
"""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor

__all__ = ["scratch"]

_blocks = threading.local()
# Numbers kept per thread and dtype at most: 2^22 (32 MiB of float64), 16 times the callers' chunks. The page
# faults of a request beyond it cost about 0.5 ns a number (0.25 us per 4 KiB page), small beside the work
# each number is fetched for, and keeping it would hold that much memory for the rest of the process.
_KEEP_AT_MOST = 1 << 22


def scratch(*shapes: tuple[int, ...], dtype: torch.dtype = torch.float64,
            device: torch.device | str = "cpu") -> tuple[Tensor, ...]:
    """Uninitialized tensors of these shapes, side by side in one block of this thread's memory.

    The block is handed out again at this thread's next call, so a caller must be done with the tensors
    before it calls ``scratch`` again and must never return them (or views of them) to its own caller.
    """
    sizes = [math.prod(shape) for shape in shapes]
    device = torch.device(device)
    if device.type != "cpu" or sum(sizes) > _KEEP_AT_MOST:
        return tuple(torch.empty(shape, dtype=dtype, device=device) for shape in shapes)
    kept: dict[torch.dtype, Tensor] = _blocks.__dict__.setdefault("by_dtype", {})
    block = kept.get(dtype)
    if block is None or block.numel() < sum(sizes):
        block = kept[dtype] = torch.empty(sum(sizes), dtype=dtype)
    out, start = [], 0
    for shape, size in zip(shapes, sizes):
        out.append(block[start : start + size].view(shape))
        start += size
    return tuple(out)
