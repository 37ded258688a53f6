"""``gradcheckers grade``: every submission of a course, in parallel, into a gradebook.

Each student's submission is checked by :func:`gradcheckers.session.check_submission` in a pool of job
processes; each job process imports torch once and keeps its fork server of sandbox workers warm, so the
start-up of a worker does not dominate. One bad submission costs at most its own limits: it never stops or
skews the others.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gradcheckers import report as writers
from gradcheckers.errors import LoadError

__all__ = ["discover_submissions", "grade_directory"]

SUFFIXES = (".py", ".ipynb")
# In a student's folder holding several files, these names are taken as the submission first.
PREFERRED_STEMS = ("submission", "gradients", "homework", "solution", "main")


def discover_submissions(directory: Path) -> Iterator[tuple[str, Path | None, str | None]]:
    """(student, submission file or None, problem) for each file or sub-folder of ``directory``, sorted."""
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file() and entry.suffix in SUFFIXES:
            yield entry.stem, entry, None
        elif entry.is_dir():
            found = sorted(p for p in entry.rglob("*") if p.suffix in SUFFIXES and p.is_file()
                           and not any(part.startswith((".", "_")) for part in p.relative_to(entry).parts))
            preferred = [p for p in found if p.stem in PREFERRED_STEMS]
            if len(found) == 1:
                yield entry.name, found[0], None
            elif preferred:
                yield entry.name, preferred[0], None
            elif not found:
                yield entry.name, None, "no .py or .ipynb file in the folder"
            else:
                names = ", ".join(str(p.relative_to(entry)) for p in found[:5])
                yield entry.name, None, f"several candidate files ({names}); name one submission.py"


def _grade_one(job: tuple[str, str | None, str | None, Any, Any, dict[str, Any]]) -> dict[str, Any]:
    from gradcheckers.session import SubmissionReport, check_submission

    student, path, problem, settings, limits, options = job
    started = time.perf_counter()
    if path is None:
        report = SubmissionReport(student, settings.assignment, settings, load_error=problem)
    else:
        try:
            report = check_submission(path, settings, limits, **options)
        except LoadError as error:  # check_submission records load errors; this is belt and braces
            report = SubmissionReport(path, settings.assignment, settings, load_error=str(error))
        except Exception as error:  # never lose a student's row to a bug of ours: report it as such
            report = SubmissionReport(path, settings.assignment, settings,
                                      load_error=f"internal error of gradcheckers: {type(error).__name__}: {error}")
    data = report.to_json()
    data["student"] = student
    data["seconds"] = round(time.perf_counter() - started, 3)
    return data


def _warm_up() -> None:
    # Import torch and the checker once per job process, before the first submission arrives, while the
    # job's fork server of sandbox workers imports torch beside it.
    from gradcheckers.sandbox import prestart

    prestart()
    import gradcheckers.session  # noqa: F401


class _Progress:
    """A bar on a terminal; plain periodic lines in CI logs (where \\r only clutters the log)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.tty = sys.stderr.isatty()
        self.started = time.perf_counter()
        self.last_line = 0.0

    def update(self, data: dict[str, Any]) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed * 60 if elapsed > 0 else 0.0
        if self.tty:
            filled = int(30 * self.done / max(self.total, 1))
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} "
                             f"({rate:.0f}/min) {writers.terminal_safe(data['student'][:30]):30}")
            if self.done == self.total:
                sys.stderr.write("\n")
        elif self.done == self.total or elapsed - self.last_line >= 10 or self.done % 25 == 0:
            self.last_line = elapsed
            sys.stderr.write(f"graded {self.done}/{self.total} submissions in {elapsed:.0f}s ({rate:.0f}/min)\n")
        sys.stderr.flush()


def _safe_name(student: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", student) or "student"


def grade_directory(args: argparse.Namespace, settings: Any, limits: Any) -> int:
    directory = Path(args.directory)
    if not directory.is_dir():
        print(f"gradcheckers grade: no such folder: {directory}", file=sys.stderr)
        return 2
    from gradcheckers.assignment import get_assignment

    parameters = list(get_assignment(settings.assignment).parameters)
    # The options `check` honours too, so a student's verdict is the same from either command.
    options = {"run_all_cells": args.run_all_cells, "parameters": args.parameter}
    jobs = [(student, None if path is None else str(path), problem, settings, limits, options)
            for student, path, problem in discover_submissions(directory)]
    if not jobs:
        print(f"gradcheckers grade: no submissions (.py, .ipynb or folders) in {directory}", file=sys.stderr)
        return 2
    progress = _Progress(len(jobs))
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    # forkserver: job processes start clean (no inherited threads or locks) but from a warm template.
    context = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context, initializer=_warm_up) as pool:
        for data in pool.map(_grade_one, jobs):
            results[data["student"]] = data
            progress.update(data)
    elapsed = time.perf_counter() - started

    weights_ = args.weights or {}
    max_total = sum(weights_.get(p, 1.0) for p in parameters)
    if weights_:  # as `check --weights` does, so the reports, the gradebook and the summary agree
        for data in results.values():
            data["score"] = float(sum(weights_.get(p, 1.0) for p, r in data.get("parameters", {}).items()
                                      if r["passed"]))
            data["max_score"] = float(max_total)
    reports_dir = Path(args.reports)
    reports_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for student, data in results.items():
        name = _safe_name(student)
        while name in used:  # "a b" and "a_b" must not overwrite each other's report
            name += "_"
        used.add(name)
        writers.write_json(reports_dir / f"{name}.json", data)
    csv_path = Path(args.csv)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", *parameters, "total", "max_total", "status"])
        for student, data in results.items():
            params = data.get("parameters", {})
            row = [weights_.get(p, 1.0) if params.get(p, {}).get("passed") else 0.0 for p in parameters]
            # One line per student: a load error's message spans lines (a syntax error's caret, a traceback).
            problem = " ".join(str(data.get("load_error")).split())[:200]
            status = ("cannot check: " + problem) if data.get("load_error") else (
                "passed" if data.get("passed") else "failed: " + ", ".join(
                    f"{p} ({params[p].get('reason')})" for p in parameters if p in params and not params[p]["passed"]))
            writer.writerow([student, *[f"{v:g}" for v in row], f"{sum(row):g}", f"{max_total:g}", status])
    if getattr(args, "junit", None):
        writers.write_text(args.junit, writers.junit_xml(list(results.values())))

    passed = sum(1 for d in results.values() if d.get("passed"))
    unchecked = sum(1 for d in results.values() if d.get("load_error"))
    print(f"\n{'student':30} {' '.join(f'{p:>4}' for p in parameters)}  total")
    for student, data in results.items():
        params = data.get("parameters", {})
        cells = " ".join(f"{('ok' if params[p]['passed'] else 'FAIL') if p in params else '-':>4}" for p in parameters)
        print(f"{writers.terminal_safe(student[:30]):30} {cells}  {data.get('score', 0):g}/{max_total:g}"
              + ("  (cannot check)" if data.get("load_error") else ""))
    print(f"\n{len(results)} submissions in {elapsed:.1f}s ({len(results) / elapsed * 60:.0f}/min) with "
          f"{args.jobs} job(s): {passed} passed, {len(results) - passed - unchecked} failed, {unchecked} could "
          f"not be checked. Gradebook: {csv_path}; reports: {reports_dir}{os.sep}")
    return 0
