"""Targets 4 and 5: the course gate end to end, through the command line as an instructor runs it.

(``benchmarks/gate.py`` is the gate's own stand-alone script; this module measures the same two things for
``python -m benchmarks.run``, with the time split into its parts, and generates its course with that
script's ``submission_text`` so that both grade the same kinds of submission.)

Target 4: ``python -m gradcheckers check`` on the bundled correct submission with the default settings (four
parameters, the default number of examples, float32 and float64), wall time from the shell including the
interpreter's start and the isolated worker. The split comes from three sources: a bare interpreter start
and a bare import measured beside it, the report's own ``timings`` (worker start, the submission's calls
including their round trips, Hypothesis and the oracles in the parent), and what is left (loading the
source, writing the report, exiting).

Target 5: ``python -m gradcheckers grade`` of generated submissions with ``--jobs 2``: half of them correct,
the rest spread over the usual mistakes (a flipped sign, a missing factor 2, a missing sum over the batch, a
mean for a sum, an exception, a syntax error: ``benchmarks.gate.VARIANTS``). Throughput in submissions per
minute, wall time from the shell.
"""

from __future__ import annotations

import argparse
import compileall
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import ROOT, heading, table

CORRECT = ROOT / "gradcheckers" / "examples" / "correct.py"


def _wall(command: list[str], repeats: int) -> tuple[float, subprocess.CompletedProcess[str]]:
    times, done = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        times.append(time.perf_counter() - started)
    assert done is not None
    return statistics.median(times), done


def one_submission(*, quick: bool) -> dict[str, float]:
    """Median wall seconds of the check and of a bare ``python -c "import torch"`` (taken in turns, one of each
    per round, so that other load slows both alike)."""
    repeats = 3 if quick else 7
    python = sys.executable
    # torch and Hypothesis are imported from bytecode that pip compiled when it installed them; so is an
    # installed gradcheckers. A checkout run with PYTHONDONTWRITEBYTECODE (set on this project's machine)
    # would compile its modules from source in every run instead (0.05 s), a cost no installation has.
    for package in ("gradcheckers", "models"):
        compileall.compile_dir(ROOT / package, quiet=1)
    interpreter, _ = _wall([python, "-c", "pass"], repeats)
    imports, _ = _wall([python, "-c", "import torch, hypothesis, gradcheckers.cli, gradcheckers.session"], repeats)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [python, "-m", "gradcheckers", "check", str(CORRECT), "--quiet", "--json", str(report)]
        samples, bare = [], []
        timings: list[dict[str, float]] = []
        for _ in range(repeats):
            bare.append(_wall([python, "-c", "import torch"], 1)[0])
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            samples.append(time.perf_counter() - started)
            if done.returncode != 0:
                print(f"gradcheckers check exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
                return {"check": float("nan"), "import_torch": statistics.median(bare)}
            data = json.loads(report.read_text())
            timings.append(data.get("timings", {}))
            examples = sum(p["examples"] for p in data["parameters"].values())
    total = statistics.median(samples)
    parts = {k: statistics.median(t.get(k, 0.0) for t in timings) for k in timings[0]}
    rows = [
        ["interpreter start (python -c pass)", interpreter],
        ["imports: torch, hypothesis, gradcheckers", imports - interpreter],
        ["isolated worker start (report timings)", parts.get("worker_start", 0.0)],
        ["submission's calls, with their round trips", parts.get("submission_code", 0.0)],
        ["Hypothesis and the oracles, in the parent", parts.get("hypothesis_and_oracles", 0.0)],
    ]
    # By subtraction, and the parts come from other processes (the imports) or overlap (the worker's fork
    # server imports torch while the parent does): negative where the overlap outweighs the rest.
    rows.append(["the rest: loading the source, reports, exit, less overlap", total - sum(t for _, t in rows)])
    print(f"`gradcheckers check {CORRECT.relative_to(ROOT)}` (default settings, {examples} examples): median "
          f"{total:.2f} s wall over {repeats} run(s); target < 5 s: {'met' if total < 5 else 'NOT met'}.\n")
    print(table(["part", "seconds", "share"], [[n, f"{t:.2f}", f"{100 * t / total:.0f}%"] for n, t in rows]))
    torch_s = statistics.median(bare)
    print(f"\nA bare `python -c \"import torch\"` beside it (same rounds): median {torch_s:.2f} s; the check takes "
          f"{total / torch_s:.2f}× that (target ≤ 1.5×: {'met' if total <= 1.5 * torch_s else 'NOT met'}).")
    return {"check": total, "import_torch": torch_s}


# --------------------------------------------------------------------------------------------------------
# A course


def _variants() -> dict[str, str]:
    from benchmarks.gate import VARIANTS, submission_text

    return {variant[0]: submission_text(variant) for variant in VARIANTS}


# Half correct, the rest spread over the mistakes (a course after a first round of feedback).
MIX = ["correct", "sign", "correct", "factor", "correct", "no_batch_sum", "correct", "mean", "correct", "raises",
       "correct", "syntax"]


def course(*, quick: bool, students: int | None = None, jobs: int = 2) -> float:
    students = students or (20 if quick else 300)
    variants = _variants()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "submissions"
        folder.mkdir()
        kinds: dict[str, int] = {}
        for i in range(students):
            kind = MIX[i % len(MIX)]
            kinds[kind] = kinds.get(kind, 0) + 1
            (folder / f"student{i:04d}_{kind}.py").write_text(variants[kind])
        gradebook = Path(tmp) / "gradebook.csv"
        command = [sys.executable, "-m", "gradcheckers", "grade", str(folder), "--jobs", str(jobs), "--csv",
                   str(gradebook), "--reports", str(Path(tmp) / "reports")]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        elapsed = time.perf_counter() - started
        if not gradebook.exists():
            print(f"gradcheckers grade exited {done.returncode} without a gradebook:\n{done.stderr[-2000:]}")
            return float("nan")
        with gradebook.open() as handle:
            rows = list(csv.DictReader(handle))
        seconds = []
        for report in (Path(tmp) / "reports").glob("*.json"):
            seconds.append(json.loads(report.read_text()).get("seconds", 0.0))
    per_minute = students / elapsed * 60
    passed = sum(1 for r in rows if r["status"] == "passed")
    expected = kinds.get("correct", 0)
    mix = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    print(f"`gradcheckers grade` of {students} generated submissions ({mix}) with --jobs {jobs}: "
          f"{elapsed:.1f} s wall, {per_minute:.0f} submissions/minute; {len(rows)} gradebook rows, {passed} "
          f"passed (expected {expected}); exit code {done.returncode}.")
    if seconds:
        print(f"Per submission inside its job: median {statistics.median(seconds):.2f} s, "
              f"max {max(seconds):.2f} s.")
    estimate = 300 / per_minute
    print(f"Target 5 (300 submissions in < 5 min, ≥ 60/min): {per_minute:.0f}/min, "
          f"{'measured' if students == 300 else 'extrapolated'} {estimate:.1f} min for 300: "
          f"{'met' if per_minute >= 60 else 'NOT met'}.")
    return per_minute


def run(*, quick: bool = False, course_too: bool = True) -> dict[str, float]:
    heading("Target 4: one submission through `gradcheckers check`, end to end")
    figures = one_submission(quick=quick)
    if course_too:
        heading("Target 5: a course through `gradcheckers grade --jobs 2`")
        course(quick=quick)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--students", type=int)
    parser.add_argument("--only", choices=("check", "grade"))
    options = parser.parse_args()
    if options.only != "grade":
        heading("Target 4: one submission through `gradcheckers check`, end to end")
        one_submission(quick=options.quick)
    if options.only != "check":
        heading("Target 5: a course through `gradcheckers grade --jobs 2`")
        course(quick=options.quick, students=options.students)


if __name__ == "__main__":
    main()
