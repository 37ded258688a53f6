"""What confinement costs per worker start (issue 10: at most 20 ms, with the fork server kept warm).

    python -m benchmarks.isolation [--starts 30]

Each start forks a worker from the warm server, which confines itself (uid and gid, no_new_privs, Landlock,
seccomp) before it loads a correct submission. The worker measures its own confinement (``apply_all``, from
the first layer to the last) and sends that figure with its isolation record; the table gives its median and
largest value beside the median of a whole start (fork, confinement, loading the submission, the first
reply), for the torch server and the numpy server.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

CORRECT = Path(__file__).parent.parent / "tests" / "submissions" / "correct.py"
NUMPY = '''import numpy as np


def grad_b2(X, Y, W1, b1, W2, b2):
    H = 1 / (1 + np.exp(-(X @ W1 + b1)))
    return (-2 * (Y - (H @ W2 + b2))).sum(0)
'''


def measure(starts: int, *, numpy: bool, path: Path) -> tuple[list[float], list[float], dict[str, str]]:
    from gradcheckers.sandbox import Limits, Worker
    from gradcheckers.submission import load_source

    source, limits = load_source(path), Limits(numpy=numpy)
    with Worker(source, limits) as warm:  # the server's own start (seconds) is not a worker start
        record = warm.isolation
    confinement, whole = [], []
    for _ in range(starts):
        started = time.perf_counter()
        with Worker(source, limits) as worker:
            whole.append(time.perf_counter() - started)
            confinement.append(worker.isolation_seconds)
    return confinement, whole, record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.isolation", description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=30)
    options = parser.parse_args(argv)
    import tempfile

    from benchmarks._harness import machine, table

    print(f"Machine: {machine()}.\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        numpy_path = Path(tmp) / "numpy_submission.py"
        numpy_path.write_text(NUMPY)
        for label, numpy, path in (("torch", False, CORRECT), ("numpy", True, numpy_path)):
            confinement, whole, record = measure(options.starts, numpy=numpy, path=path)
            rows.append([label, f"{statistics.median(confinement) * 1e3:.2f} ms", f"{max(confinement) * 1e3:.2f} ms",
                         f"{statistics.median(whole) * 1e3:.1f} ms"])
    print(table(["server", "confinement, median", "confinement, largest", "whole worker start, median"], rows))
    print("\nLayers in force:", ", ".join(f"{k}: {v}" for k, v in record.items()))


if __name__ == "__main__":
    main()
