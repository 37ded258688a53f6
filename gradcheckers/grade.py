"""``gradcheckers grade``: every submission of a course, in parallel, into a gradebook that never loses a grade.

The parts, one concern each: :mod:`~gradcheckers.discovery` finds the students, :mod:`~gradcheckers.jobs`
grades one of them (anywhere), :mod:`~gradcheckers.pool` or :mod:`~gradcheckers.cluster` runs the jobs,
:mod:`~gradcheckers.gradebook` commits each result as it arrives and exports the files, and
:mod:`~gradcheckers.progress` shows how far it got. This module plans the run and tells the instructor what
happened.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradcheckers import report as writers
from gradcheckers.cluster import ClusterUnavailable
from gradcheckers.discovery import Entry, Skipped, discover
from gradcheckers.gradebook import (
    INFRASTRUCTURE,
    Gradebook,
    GradebookError,
    export_csv,
    export_junit,
    export_reports,
)
from gradcheckers.jobs import GradeSpec, Job, run_job, settings_digest
from gradcheckers.progress import Progress

__all__ = ["grade_directory", "gradebook_command"]

# A job whose process died is run once more in a fresh process: a one-off (the OOM killer, a person's kill)
# then costs nothing, while a submission that kills its grader every time costs two runs, not a stuck course.
ATTEMPTS = 2


def _job(entry: Entry, directory: Path) -> Job:
    """The entry's submission as data, read under the gate's rules: a regular file, never through a link that
    leads out of the student's own folder (a top-level file: no link at all, or one student could hand in a
    classmate's file or the instructor's solution), bounded in size; a student folder's own modules come along."""
    from gradcheckers.errors import LoadError
    from gradcheckers.submission import check_regular_file, read_text, sibling_modules

    if entry.path is None:
        return Job(entry.student, None, None, entry.problem)
    top = directory / entry.path.relative_to(directory).parts[0]  # the student's file or folder
    if top.is_symlink():
        return Job(entry.student, str(entry.path), None, f"{top} is a symbolic link: hand in the file or folder "
                   "itself, not a link to it")
    own_folder = entry.path.parent if top.is_dir() else None
    try:
        check_regular_file(entry.path, own_folder or directory)
        code = read_text(entry.path).encode("utf-8", "surrogatepass")
        siblings = sibling_modules(entry.path, own_folder) if own_folder is not None else ()
    except LoadError as error:
        return Job(entry.student, str(entry.path), None, str(error))
    return Job(entry.student, str(entry.path), code, siblings=siblings)


def _warm_up() -> None:
    # Import torch and the checker once per job process, before the first submission arrives, while the
    # job's fork server of sandbox workers imports torch beside it.
    from gradcheckers.sandbox import prestart

    prestart()
    import gradcheckers.session  # noqa: F401


def _infrastructure_report(job: Job, spec: GradeSpec) -> dict[str, Any]:
    from gradcheckers.session import SubmissionReport

    report = SubmissionReport(job.filename or job.student, spec.settings.assignment, spec.settings,
                              load_error=f"{INFRASTRUCTURE}: the process grading this submission died {ATTEMPTS} "
                              "times (killed from outside or out of memory); no verdict. Grade it again.",
                              load_reason="infrastructure")
    data = report.to_json()
    data["student"] = job.student
    return data


@dataclass
class _Run:
    """What happened in one run, for the summary."""

    total: int
    resumed: int = 0
    graded: int = 0
    regraded: int = 0
    retried: int = 0
    interrupted: bool = False
    statuses: Counter[str] = field(default_factory=Counter)


def grade_directory(args: argparse.Namespace, settings: Any, limits: Any) -> int:
    directory = Path(args.directory)
    if not directory.is_dir():
        print(f"gradcheckers grade: no such folder: {directory}", file=sys.stderr)
        return 2
    entries, skipped = discover(directory)
    if not entries:
        print(f"gradcheckers grade: no submissions (.py, .ipynb or folders) in {directory}", file=sys.stderr)
        return 2
    spec = GradeSpec(settings, limits, args.definitions_only, tuple(args.parameter) if args.parameter else None,
                     reuse=not args.no_reuse)
    path = Path(args.gradebook) if args.gradebook else Path(args.csv).parent / "gradebook.sqlite"
    try:
        with Gradebook(path) as book:
            return _grade(args, spec, book, [_job(e, directory) for e in entries], skipped)
    except GradebookError as error:
        print(f"gradcheckers grade: {error}", file=sys.stderr)
        return 2


def _grade(args: argparse.Namespace, spec: GradeSpec, book: Gradebook, jobs: list[Job], skipped: list[Skipped]) -> int:
    from gradcheckers.assignment import get_assignment

    digest = settings_digest(spec)
    parameters = list(spec.parameters or get_assignment(spec.settings.assignment).parameters)
    book.set_meta(parameters=parameters, weights=args.weights or {}, assignment=spec.settings.assignment,
                  settings_hash=digest, folder=str(Path(args.directory).resolve()))
    book.set_skipped([(s.name, s.reason) for s in skipped])
    known = {student for student, *_ in book.rows()}
    todo = [job for job in jobs if args.regrade or not book.current(job.student, job.digest, digest)]
    run = _Run(total=len(jobs), resumed=len(jobs) - len(todo))
    progress = Progress(len(todo))
    attempts: Counter[str] = Counter()

    def done(job: Job, data: dict[str, Any] | None) -> bool:
        attempts[job.student] += 1
        if data is None:
            if attempts[job.student] < ATTEMPTS:
                book.log(job.student, "retry", "the job process grading it died")
                run.retried += 1
                return True
            data = _infrastructure_report(job, spec)
        status = book.record(data, job.digest, digest, attempts[job.student])
        run.graded += 1
        run.regraded += job.student in known
        run.statuses[status] += 1
        progress.update(job.student)
        return False

    started = time.perf_counter()
    try:
        if todo:
            _runner(args, spec).run(todo, done)
    except ClusterUnavailable as error:
        print(f"gradcheckers grade: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        run.interrupted = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the exports below take a moment: let them finish
    finally:
        progress.close()
    elapsed = time.perf_counter() - started
    _export(book, args)
    _summary(book, args, run, parameters, elapsed, skipped)
    return 130 if run.interrupted else 0


def _runner(args: argparse.Namespace, spec: GradeSpec) -> Any:
    if args.scheduler:
        from gradcheckers.cluster import DaskRunner

        return DaskRunner(args.scheduler, spec)
    from gradcheckers.pool import LocalPool

    return LocalPool(args.jobs, run_job, extra=(spec,), initializer=_warm_up)


def _export(book: Gradebook, args: argparse.Namespace) -> None:
    weights = book.meta("weights", {})
    export_csv(book, args.csv, weights)
    export_reports(book, args.reports, weights)
    if getattr(args, "junit", None):
        export_junit(book, args.junit)


def _summary(book: Gradebook, args: argparse.Namespace, run: _Run, parameters: list[str], elapsed: float,
             skipped: list[Skipped]) -> None:
    from gradcheckers.gradebook import scored_reports, status_of

    reports = scored_reports(book, book.meta("weights", {}))
    max_total = reports[0]["max_score"] if reports else 0
    print(f"\n{'student':30} {' '.join(f'{p:>4}' for p in parameters)}  total")
    for data in reports:
        params = data.get("parameters", {})
        cells = " ".join(f"{('ok' if params[p]['passed'] else 'FAIL') if p in params else '-':>4}" for p in parameters)
        status = status_of(data)
        note = {"not checkable": "  (cannot check)", INFRASTRUCTURE: f"  ({INFRASTRUCTURE})"}.get(status, "")
        name = writers.terminal_safe(data["student"][:30])
        print(f"{name:30} {cells}  {data.get('score', 0):g}/{max_total:g}{note}")
    for item in skipped:
        print(f"skipped {writers.terminal_safe(item.name)}: {item.reason}")
    counts = Counter(status_of(d) for d in reports)
    rate = f" ({run.graded / elapsed * 60:.0f}/min)" if run.graded and elapsed > 0 else ""
    print(f"\n{len(reports)} students in the gradebook: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['not checkable']} not checkable, {counts[INFRASTRUCTURE]} {INFRASTRUCTURE}s.")
    print(f"This run: {run.graded} graded in {elapsed:.1f}s{rate} ({run.regraded} regraded), {run.resumed} resumed "
          f"unchanged, {run.retried} retried after a lost job process, {len(skipped)} names skipped.")
    exports = [str(args.csv), f"{args.reports}{os.sep}"] + ([str(args.junit)] if getattr(args, "junit", None) else [])
    print(f"Gradebook: {book.path}; exports: {', '.join(exports)}")
    if run.interrupted:
        left = run.total - run.resumed - run.graded
        print(f"Interrupted: {run.graded} graded in this run are kept in {book.path}; run the same command again "
              f"to grade the {left} left.")


def gradebook_command(args: argparse.Namespace) -> int:
    """``gradcheckers gradebook show|export PATH``: read a gradebook without grading anything."""
    from gradcheckers.gradebook import scored_reports, status_line

    if not Path(args.path).is_file():
        print(f"gradcheckers gradebook: no such gradebook: {args.path}", file=sys.stderr)
        return 2
    try:
        with Gradebook(args.path) as book:
            weights = args.weights if args.weights is not None else book.meta("weights", {})
            if args.action == "export":
                if not (args.csv or args.reports or args.junit):
                    print("gradcheckers gradebook export: name at least one of --csv, --reports, --junit",
                          file=sys.stderr)
                    return 2
                if args.csv:
                    export_csv(book, args.csv, weights)
                if args.reports:
                    export_reports(book, args.reports, weights)
                if args.junit:
                    export_junit(book, args.junit)
                return 0
            parameters = book.meta("parameters", [])
            attempts = {student: (count, when) for student, _, count, when in book.rows()}
            for data in scored_reports(book, weights):
                count, when = attempts[data["student"]]
                tries = f"  [{count} attempts]" if count > 1 else ""
                name = writers.terminal_safe(data["student"][:30])
                print(f"{name:30} {data.get('score', 0):g}/{data.get('max_score', 0):g}  {when}  "
                      f"{status_line(data, parameters)[:120]}{tries}")
            for name, reason in book.skipped():
                print(f"skipped {writers.terminal_safe(name)}: {reason}")
    except GradebookError as error:
        print(f"gradcheckers gradebook: {error}", file=sys.stderr)
        return 2
    return 0
