"""Benchmarks of the course gate (issue 3, targets 4 and 5).

    python -m benchmarks.gate [--repeats 5] [--students 300] [--jobs 2]

Target 4: ``gradcheckers check`` of one correct ``.py`` with default settings, end to end (interpreter start,
imports, the isolated worker, Hypothesis, the oracles, the submission's own code), median of repeats, and
how the time splits. Target 5 (and issue 12): ``gradcheckers grade`` of a generated course (a mix of correct
and wrong submissions): submissions per minute with ``--jobs`` local processes and with a two-worker Dask
``LocalCluster``, each before (``--no-reuse``) and after reusing references across submissions, and the
verdicts of every run compared with the first.
"""

from __future__ import annotations

import argparse
import csv
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


def _grade(root: Path, out: Path, extra: list[str]) -> tuple[float, dict[str, str], str]:
    """One `gradcheckers grade` run into its own gradebook: (seconds, status per student, its summary line)."""
    out.mkdir()
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gradcheckers", "grade", str(root), "--csv", str(out / "grades.csv"),
                           "--reports", str(out / "reports"), "--gradebook", str(out / "gradebook.sqlite"), *extra],
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"grade {' '.join(extra)} failed with exit code {proc.returncode}:\n{proc.stderr[-3000:]}")
    with (out / "grades.csv").open(newline="") as handle:
        statuses = {row["student"]: row["status"] for row in csv.DictReader(handle)}
    lines = proc.stdout.strip().splitlines()
    return elapsed, statuses, next((ln for ln in lines if ln.startswith("This run:")), "")


def course(students: int, jobs: int, cluster: bool) -> None:
    """submissions/min for the local pool (and a two-worker LocalCluster), before and after reuse, one run."""
    print(f"gradcheckers grade: {students} generated submissions ({len(VARIANTS)} variants), one gradebook per run; "
          "the machine is shared, so compare the rates within this run", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "course"
        root.mkdir()
        for i in range(students):
            variant = VARIANTS[i % len(VARIANTS)]
            (root / f"student{i:03d}_{variant[0]}.py").write_text(submission_text(variant))
        runs: dict[str, list[str]] = {
            "local pool, no reuse": ["--jobs", str(jobs), "--no-reuse"],
            "local pool, reuse": ["--jobs", str(jobs)],
        }
        if cluster:
            runs["LocalCluster x2, no reuse"] = ["--no-reuse"]
            runs["LocalCluster x2, reuse"] = []
        reference: dict[str, str] = {}
        for n, (name, extra) in enumerate(runs.items()):
            if "LocalCluster" in name:
                from distributed import LocalCluster

                # Two single-threaded worker processes on loopback, as `dask worker` runs them on two machines;
                # a fresh cluster per run, so that no cache is kept from the run before.
                with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as local:
                    elapsed, statuses, line = _grade(root, Path(tmp) / f"run{n}",
                                                     ["--scheduler", local.scheduler_address, *extra])
            else:
                elapsed, statuses, line = _grade(root, Path(tmp) / f"run{n}", extra)
            reference = reference or statuses
            wrongly = [s for s, status in statuses.items() if ("_correct" in s) != (status == "passed")]
            differ = [s for s in reference if statuses.get(s) != reference[s]]
            print(f"  {name:26} {students / elapsed * 60:6.0f} submissions/min (wall {elapsed:.1f} s, rows "
                  f"{len(statuses)}); contrary to the variant: {len(wrongly)}; verdicts differing from the first "
                  f"run: {len(differ)}")
            print(f"    {line}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", choices=("check", "grade"), default=None)
    parser.add_argument("--no-cluster", action="store_true", help="skip the two-worker LocalCluster runs")
    args = parser.parse_args()
    if args.only in (None, "check"):
        one_submission(args.repeats)
    if args.only in (None, "grade"):
        course(args.students, args.jobs, cluster=not args.no_cluster)


if __name__ == "__main__":
    main()
