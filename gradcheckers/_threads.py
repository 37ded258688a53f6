"""One intra-op thread for small work: the property check's per-example path runs thousands of tiny ops.

torch splits an elementwise op over its threads only above 32,768 elements (``at::internal::GRAIN_SIZE``),
so on a case whose tensors are all smaller than that the extra threads never share work; they only join
each parallel region of the BLAS calls and wait at its barrier. On an idle machine that costs microseconds
per op; on a shared one, where a thread is often descheduled, it costs milliseconds: two threads took 10 ms
for the seed's grad_W1 on a 32 x 8 case where one thread took 24 us (2 cores, load average 12,
2026-11-30). Work on larger tensors keeps torch's setting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

__all__ = ["SMALL", "one_thread_if_small"]

# torch's grain size for elementwise ops (at::internal::GRAIN_SIZE): below it an op runs on one thread anyway.
SMALL = 1 << 15


@contextlib.contextmanager
def one_thread_if_small(tensors: Iterable[object]) -> Iterator[None]:
    """Run the block on one intra-op thread when every tensor given has at most SMALL elements; restore the
    previous setting after it."""
    previous = torch.get_num_threads()
    if previous == 1 or any(isinstance(t, Tensor) and t.numel() > SMALL for t in tensors):
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
