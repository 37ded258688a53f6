"""Progress: a tqdm bar with rate and ETA on a terminal, plain lines in a log."""

from __future__ import annotations

import io
import re

from gradcheckers.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_with_rate_and_eta() -> None:
    stream = Terminal()
    progress = Progress(3, stream)
    for student in ("ann", "bob", "cy"):
        progress.update(student)
    progress.close()
    assert re.search(r"100%\|#+\| 3/3 \[[\d:]+<[\d:]+, +[\d.]+sub/s, cy\]\n$", stream.getvalue()), stream.getvalue()


def test_a_log_gets_plain_lines_ending_with_the_total() -> None:
    stream = io.StringIO()
    progress = Progress(3, stream)
    for student in ("ann", "bob", "cy"):
        progress.update(student)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert re.fullmatch(r"graded 3/3 submissions in \d+s \(\d+/min, about \d+s left\)", lines[-1])
