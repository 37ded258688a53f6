"""Progress of a course run: a tqdm bar (rate and ETA) on a terminal, plain periodic lines in CI logs."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from gradcheckers.report import terminal_safe

__all__ = ["Progress"]

# In a log, a line every 10 s or every 25 submissions: often enough to see a run move, rarely enough that a
# course of 1,000 leaves a readable log (about 40 lines).
_LINE_EVERY_S = 10.0
_LINE_EVERY_N = 25


class Progress:
    """``total`` submissions to grade in this run (those resumed from the gradebook are not counted)."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self.last_line = 0.0
        self.bar: Any = None
        if self.stream.isatty() and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="sub", file=self.stream, dynamic_ncols=True, smoothing=0.1)

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.done / elapsed * 60 if elapsed > 0 else 0.0

    def update(self, student: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(terminal_safe(student[:30]), refresh=False)
            self.bar.update(1)
            return
        elapsed = time.perf_counter() - self.started
        if self.done == self.total or elapsed - self.last_line >= _LINE_EVERY_S or self.done % _LINE_EVERY_N == 0:
            self.last_line = elapsed
            rate = self.rate()
            left = (self.total - self.done) / rate * 60 if rate > 0 else 0.0
            self.stream.write(f"graded {self.done}/{self.total} submissions in {elapsed:.0f}s ({rate:.0f}/min, "
                              f"about {left:.0f}s left)\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
