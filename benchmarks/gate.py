"""Benchmarks of the course gate (issue 3, targets 4 and 5).

    python -m benchmarks.gate [--repeats 5] [--students 300] [--jobs 2]

Target 4: ``gradcheckers check`` of one correct ``.py`` with default settings, end to end (interpreter start,
imports, the isolated worker, Hypothesis, the oracles, the submission's own code), median of repeats, and
how the time splits. Target 5: ``gradcheckers grade`` of a generated course (a mix of correct and wrong
submissions) with ``--jobs`` processes: submissions per minute.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = "import torch\n\n"
BACKWARD = '''
def _parts(X, Y, W1, b1, W2, b2):
    Hs = torch.sigmoid(X @ W1 + b1)
    G = {G}
    dH = (G @ W2.T) * Hs * (1 - Hs)
    return Hs, G, dH
'''
FUNCTIONS = {
    "W1": "    return X.T @ _parts(X, Y, W1, b1, W2, b2)[2]\n",
    "b1": "    return _parts(X, Y, W1, b1, W2, b2)[2].sum(0)\n",
    "W2": "    Hs, G, _ = _parts(X, Y, W1, b1, W2, b2)\n    return Hs.T @ G\n",
    "b2": "    return _parts(X, Y, W1, b1, W2, b2)[1].sum(0)\n",
}
# (name, residual expression, per-parameter replacements): a correct submission and common mistakes.
VARIANTS = [
    ("correct", "-2 * (Y - (Hs @ W2 + b2))", {}),
    ("sign", "2 * (Y - (Hs @ W2 + b2))", {}),
    ("factor", "-(Y - (Hs @ W2 + b2))", {}),
    ("no_batch_sum", "-2 * (Y - (Hs @ W2 + b2))", {"b1": "    return _parts(X, Y, W1, b1, W2, b2)[2]\n",
                                                   "b2": "    return _parts(X, Y, W1, b1, W2, b2)[1]\n"}),
    ("mean", "-2 * (Y - (Hs @ W2 + b2)) / X.shape[0]", {}),
    ("raises", "-2 * (Y - (Hs @ W2 + b2))", {"W2": "    raise ValueError('not done yet')\n"}),
    ("syntax", "-2 * (Y - (Hs @ W2 + b2)", {}),
]


def submission_text(variant: tuple[str, str, dict[str, str]]) -> str:
    _, residual, replace = variant
    body = HEADER + BACKWARD.replace("{G}", residual)
    for name, text in FUNCTIONS.items():
        body += f"\n\ndef grad_{name}(X, Y, W1, b1, W2, b2):\n" + replace.get(name, text)
    return body


def one_submission(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "correct.py"
        path.write_text(submission_text(VARIANTS[0]))
        walls, timings = [], []
        for _ in range(repeats):
            report = Path(tmp) / "report.json"
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "gradcheckers", "check", str(path), "--json", str(report),
                                   "--quiet"], capture_output=True, text=True)
            walls.append(time.perf_counter() - started)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            timings.append(json.loads(report.read_text())["timings"])
        imports = []
        for _ in range(repeats):
            out = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); "
                                  "import gradcheckers.session, gradcheckers.cli; print(time.perf_counter() - t)"],
                                 capture_output=True, text=True)
            imports.append(float(out.stdout))
    print(f"gradcheckers check correct.py (default settings: 100 examples x 4 parameters, float64+float32), "
          f"{repeats} runs")
    print(f"  wall, end to end     median {statistics.median(walls):6.2f} s  (min {min(walls):.2f}, "
          f"max {max(walls):.2f}); target < 5 s")
    print(f"  imports (torch, ...) median {statistics.median(imports):6.2f} s")
    for key in ("worker_start", "hypothesis_and_oracles", "submission_code"):
        values = [t.get(key, 0.0) for t in timings]
        print(f"  {key:20} median {statistics.median(values):6.2f} s")


def course(students: int, jobs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "course"
        root.mkdir()
        for i in range(students):
            variant = VARIANTS[i % len(VARIANTS)]
            (root / f"student{i:03d}_{variant[0]}.py").write_text(submission_text(variant))
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "gradcheckers", "grade", str(root), "--jobs", str(jobs),
                               "--csv", str(Path(tmp) / "gradebook.csv"), "--reports", str(Path(tmp) / "reports")],
                              capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        rows = (Path(tmp) / "gradebook.csv").read_text().splitlines()[1:]
    wrongly = [r for r in rows if ("_correct," in r) != r.endswith(",passed")]
    print(f"gradcheckers grade: {students} generated submissions ({len(VARIANTS)} variants), --jobs {jobs}")
    print(f"  wall {elapsed:.1f} s = {students / elapsed * 60:.0f} submissions/minute (target >= 60/min, < 5 min)")
    print(f"  exit code {proc.returncode}; rows {len(rows)}; verdicts contrary to the variant: {len(wrongly)}")
    print("  " + proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", choices=("check", "grade"), default=None)
    args = parser.parse_args()
    if args.only in (None, "check"):
        one_submission(args.repeats)
    if args.only in (None, "grade"):
        course(args.students, args.jobs)


if __name__ == "__main__":
    main()
