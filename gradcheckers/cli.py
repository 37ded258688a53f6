"""The command line: ``gradcheckers check`` for one submission, ``gradcheckers grade`` for a course.

Exit codes of ``check``: 0 every gradient agrees, 1 some check failed (wrong values or shapes, errors,
timeouts, forbidden calls), 2 the submission cannot be checked at all or the options are wrong (a usage
error), 3 gradcheckers itself failed (a bug in gradcheckers or in an assignment's definition): never read as a
wrong gradient, and the reports are still written.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gradcheckers.limits import ISOLATION_LEVELS
from gradcheckers.options import (
    DEVICE_CHOICES,
    DTYPE_CHOICES,
    name_list,
    positive_float,
    positive_int,
    seed_value,
    weights,
)

__all__ = ["main"]



class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, except where there is none to show (None, a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _add_check_options(parser: argparse.ArgumentParser) -> None:
    """The options shared by check and grade; they mirror the plugin's --gradcheckers-* options."""
    group = parser.add_argument_group("what to check")
    group.add_argument("--assignment", default="two-layer-sigmoid",
                       help="bundled assignment name (see `gradcheckers assignments`) or definition file")
    group.add_argument("--examples", type=positive_int, default=100, help="Hypothesis examples per parameter")
    group.add_argument("--seed", type=seed_value, default="0", help="seed of the case search (integer or 'random')")
    # A string default goes through `type`, so --help shows it as it is typed.
    group.add_argument("--dtypes", type=name_list(DTYPE_CHOICES), default="float64,float32",
                       help="comma-separated dtypes to draw")
    group.add_argument("--devices", type=name_list(DEVICE_CHOICES), default=None,
                       help="comma-separated devices to draw (default: cpu, or $GRADCHECKERS_DEVICES)")
    group.add_argument("--rtol", type=float, default=None, help="relative tolerance (with --atol) replacing the policy")
    group.add_argument("--atol", type=float, default=None, help="absolute tolerance (with --rtol)")
    group.add_argument("--stress", action="store_true", help="also draw large magnitudes (numerical stability)")
    group.add_argument("--parameter", action="append", default=None, help="check only this parameter (repeatable)")
    limits = parser.add_argument_group("limits of the isolated worker")
    limits.add_argument("--timeout", type=positive_float, default=10.0, help="seconds per call of a function")
    limits.add_argument("--load-timeout", type=positive_float, default=60.0, help="seconds to import the submission")
    limits.add_argument("--memory-mb", type=positive_int, default=2048, help="memory the submission may allocate")
    limits.add_argument("--cpu-seconds", type=positive_int, default=600, help="CPU time of the worker process")
    limits.add_argument("--allow-autograd", action="store_true", help="let submitted functions call autograd")
    limits.add_argument("--numpy", action="store_true",
                        help="numpy mode: the submission runs without torch (no autograd exists for it)")
    limits.add_argument("--isolation", choices=ISOLATION_LEVELS, default="best",
                        help="best: every confinement layer this machine offers (the default); strict: refuse "
                             "to grade when one is unavailable")
    cells = limits.add_mutually_exclusive_group()
    cells.add_argument("--definitions-only", action="store_true",
                       help="from a notebook, run only imports, definitions and plain constants (by default every "
                       "cell runs, as Jupyter's Run All: each is cut off after 5 s, and a cell that raises or makes "
                       "a refused call such as loss.backward() is stopped and named in the report)")
    # The default since every cell runs by default; kept so that scripts written for the old default still work.
    cells.add_argument("--run-all-cells", action="store_true", help="accepted for old scripts: every cell runs anyway")
    reports = parser.add_argument_group("reports")
    reports.add_argument("--weights", type=weights, default=None, help="score weights, e.g. W1=2,b1=1,W2=2,b2=1")


def _parser() -> argparse.ArgumentParser:
    from gradcheckers import __version__

    parser = argparse.ArgumentParser(
        prog="gradcheckers",
        description="Prove hand-derived gradients right or wrong against autograd and finite differences.",
        epilog="exit codes of check: 0 all agree, 1 some check failed, 2 cannot check (usage errors too), "
        "3 internal error of gradcheckers or the assignment",
    )
    parser.add_argument("--version", action="version", version=f"gradcheckers {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser("check", help="check one .py/.ipynb submission (or a bundled example name)",
                                formatter_class=_HelpFormatter)
    check.set_defaults(usage_parser=check)  # option errors found after parsing show this command's usage
    check.add_argument("submission", help="path to a .py or .ipynb file, or a bundled example: seed, correct")
    _add_check_options(check)
    check.add_argument("--sibling-imports", action="store_true",
                       help="let the submission import the .py modules beside it (read by the grader, at most 32 "
                            "files and 1 MiB; use it only for a folder that holds one student's files)")
    out = check.add_argument_group("report files")
    out.add_argument("--json", metavar="PATH", help="write the JSON report (schema in the README)")
    out.add_argument("--markdown", metavar="PATH", help="write a Markdown summary (also appended to "
                     "$GITHUB_STEP_SUMMARY when set)")
    out.add_argument("--gradescope", metavar="PATH", help="write Gradescope's results.json")
    out.add_argument("--junit", metavar="PATH", help="write JUnit XML")
    out.add_argument("--quiet", action="store_true", help="print only the verdict line")

    grade = commands.add_parser("grade", help="check every submission in a folder (one file or folder per student)",
                                formatter_class=_HelpFormatter)
    grade.set_defaults(usage_parser=grade)
    grade.add_argument("directory")
    _add_check_options(grade)
    grade.add_argument("--jobs", type=positive_int, default=max(1, min(4, os.cpu_count() or 1)),
                       help="submissions checked in parallel")
    grade.add_argument("--csv", metavar="PATH", default="gradebook.csv", help="gradebook")
    grade.add_argument("--reports", metavar="DIR", default="gradcheckers-reports",
                       help="folder for one JSON report per student")
    grade.add_argument("--junit", metavar="PATH", help="write JUnit XML for the whole course")
    grade.add_argument("--gradebook", metavar="PATH", default=None,
                       help="the SQLite gradebook every result is committed to (default: gradebook.sqlite beside "
                       "the CSV); a second run grades only new or changed submissions")
    grade.add_argument("--regrade", action="store_true", help="grade every submission again, changed or not")
    grade.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="grade on a Dask cluster, e.g. tcp://10.0.0.5:8786 (needs gradcheckers[cluster])")
    grade.add_argument("--no-reuse", action="store_true",
                       help="compute the references afresh for every submission (slower; for benchmarks)")

    book = commands.add_parser("gradebook", help="show or export a gradebook without grading")
    book.set_defaults(command="gradebook")
    book.add_argument("action", choices=("show", "export"))
    book.add_argument("path", help="the gradebook file (gradebook.sqlite)")
    book.add_argument("--csv", metavar="PATH", help="export: write the CSV here")
    book.add_argument("--reports", metavar="DIR", help="export: write one JSON report per student here")
    book.add_argument("--junit", metavar="PATH", help="export: write JUnit XML here")
    book.add_argument("--weights", type=weights, default=None, help="export: score weights (default: the run's)")

    assignments = commands.add_parser("assignments", help="list the bundled assignments")
    assignments.set_defaults(command="assignments")
    return parser


def _settings(args: argparse.Namespace) -> Any:
    import random

    from gradcheckers.property import CheckSettings

    seed = random.Random().randrange(2**32) if args.seed == "random" else int(args.seed)
    values: dict[str, Any] = {
        "max_examples": args.examples,
        "seed": seed,
        "dtypes": tuple(args.dtypes),
        "stress": args.stress,
        "rtol": args.rtol,
        "atol": args.atol,
    }
    if args.devices:
        values["devices"] = tuple(args.devices)  # else CheckSettings' machine-independent default (cpu)
    if args.assignment:
        values["assignment"] = args.assignment
    return CheckSettings(**values)


def _limits(args: argparse.Namespace) -> Any:
    from gradcheckers.limits import Limits

    return Limits(
        call_timeout=args.timeout,
        load_timeout=args.load_timeout,
        memory_mb=args.memory_mb,
        cpu_seconds=args.cpu_seconds,
        allow_autograd=args.allow_autograd,
        numpy=args.numpy,
        isolation=args.isolation,
    )


# Folders to remove when the command leaves by os._exit, which runs no atexit function.
_REMOVE_AT_EXIT: list[str] = []


def _private_hypothesis_home() -> None:
    """Give Hypothesis a storage folder of its own, removed at exit. By default it writes ``.hypothesis/`` (a
    constants cache, even with no example database) into the current folder, which on Gradescope is the
    student's submission folder; gate runs use no example database, so nothing there is worth keeping."""
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        return  # the caller chose one
    import atexit
    import shutil
    import tempfile

    home = tempfile.mkdtemp(prefix="gradcheckers-hypothesis-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    _REMOVE_AT_EXIT.append(home)  # _exit_now skips atexit
    _share_constants_cache(home)
    # The environment, not set_hypothesis_home_dir: worker processes of `grade` read it too.
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = home


def _share_constants_cache(home: str) -> None:
    """Keep Hypothesis's constants cache across runs, in the user's cache folder. Hypothesis reads the numbers
    and strings of every module outside site-packages (so of gradcheckers itself in an editable install) with
    ``ast``, a quarter of a second per run, and caches them by the sha1 of the source: a cache that is safe to
    share. Without the folder (read-only home), each run parses them again, as before."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gradcheckers" / "hypothesis-constants"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        os.symlink(cache, os.path.join(home, "constants"), target_is_directory=True)
    except (OSError, RuntimeError):  # RuntimeError: Path.home() with no home to find
        pass


def _freeze_imported_objects() -> None:
    """Leave what the imports made (torch's and Hypothesis's modules, a few hundred thousand objects) out of
    every later garbage collection: they live until the process ends anyway. Hypothesis runs a full
    collection before its first example (``register_random``), and Python runs more as the check allocates:
    each one walked all of them, 50 ms for the first alone (cProfile of ``gradcheckers check``)."""
    import gc

    gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "assignments":
        from gradcheckers.assignment import available_assignments, get_assignment

        for name in available_assignments():
            print(f"{name:22} {get_assignment(name).title}")
        return 0
    if args.command == "gradebook":
        from gradcheckers.grade import gradebook_command

        return gradebook_command(args)
    parser = args.usage_parser
    _private_hypothesis_home()
    if (args.rtol is None) != (args.atol is None):
        parser.error("--rtol and --atol go together: give both or neither")
    from gradcheckers.errors import InvalidArgument, LoadError

    if args.command == "check":
        from gradcheckers.sandbox import prestart
        from gradcheckers.submission import load_source, resolve_submission

        try:  # a file that is missing or does not compile needs no worker (the session reports why)
            load_source(resolve_submission(args.submission), definitions_only=args.definitions_only)
        except LoadError:
            pass
        else:
            prestart(numpy=args.numpy)  # the worker's fork server imports torch while this process does too

    try:
        settings, limits = _settings(args), _limits(args)
        from gradcheckers.assignment import get_assignment

        known = get_assignment(settings.assignment).parameters  # an unknown name is a usage error (exit 2)
        if args.parameter or args.weights:
            for option, names in (("--parameter", args.parameter or ()), ("--weights", args.weights or {})):
                unknown = [p for p in names if p not in known]
                if unknown:
                    raise InvalidArgument(f"{option} {unknown[0]!r} is not one of {', '.join(known)}")
    except InvalidArgument as error:
        parser.error(str(error))
    except Exception as error:  # an assignment file that fails to import: the instructor's input, not a bug
        parser.error(f"--assignment {args.assignment}: cannot be loaded: {type(error).__name__}: {error}")
    _freeze_imported_objects()
    if args.command == "check":
        return _check(args, settings, limits)
    from gradcheckers.grade import grade_directory

    return grade_directory(args, settings, limits)


def _check(args: argparse.Namespace, settings: Any, limits: Any) -> int:
    from gradcheckers import report as writers
    from gradcheckers.forward_verdict import FORWARD
    from gradcheckers.session import SubmissionReport, SubmissionSession

    # Fail closed: before the submission runs, every requested report says "not graded" (score 0); only the
    # final verdict replaces it (atomically), so a grader that is killed, interrupted or crashes in between
    # leaves a zero, never a stale or forged score.
    placeholder = SubmissionReport(
        args.submission, settings.assignment, settings, load_reason=writers.NOT_GRADED,
        load_error="not graded: the check did not finish (the grader was stopped or failed before its verdict)",
    )
    _write_reports(args, _scored(args, placeholder, settings), writers, summary=False)
    with SubmissionSession(
        args.submission, settings, limits, definitions_only=args.definitions_only,
        sibling_imports=args.sibling_imports,
    ) as session:
        try:
            session.load()
        except Exception:  # LoadError: recorded in the report, which is still written
            pass
        else:
            # The forward first (layers; not when --parameter narrows the check): a wrong forward explains the rest.
            checks = ([] if args.parameter or not session.checks_forward else [(FORWARD, session.check_forward)]) + [
                (parameter, functools.partial(session.check, parameter))
                for parameter in args.parameter or session.assignment.parameters]
            for name, check in checks:
                try:
                    check()
                except Exception as error:  # ours (or the assignment's): exit 3, and the reports are still written
                    session.record_internal_error(name, error)
    result = session.report
    if result.internal_error:
        print(f"gradcheckers: internal error (exit 3): {result.internal_error}", file=sys.stderr)
    data = _scored(args, result, settings)
    _write_reports(args, data, writers, summary=True)
    if args.quiet:
        verdict = ("cannot check" if result.load_error else "internal error" if result.internal_error
                   else "PASS" if result.passed else "FAIL")
        print(writers.terminal_safe(f"{args.submission}: {verdict} ({data['score']:g}/{data['max_score']:g})"))
    else:
        print(writers.terminal_report(data))
    sys.stdout.flush()
    return result.exit_code


def _scored(args: argparse.Namespace, result: Any, settings: Any) -> dict[str, Any]:
    """The JSON report, scored with ``--weights`` when given."""
    from gradcheckers.assignment import get_assignment

    data: dict[str, Any] = result.to_json()
    if args.weights:
        data["score"] = result.score(args.weights)
        parameters = get_assignment(settings.assignment).parameters
        data["max_score"] = float(sum(args.weights.get(p, 1.0) for p in parameters))
    return data


def _write_reports(args: argparse.Namespace, data: dict[str, Any], writers: Any, *, summary: bool) -> None:
    """Every report file asked for, each replaced atomically; ``summary``: also $GITHUB_STEP_SUMMARY, which is
    appended to and so gets the final verdict only."""
    if args.json:
        writers.write_json(args.json, data)
    if args.markdown or (summary and os.environ.get("GITHUB_STEP_SUMMARY")):
        text = writers.markdown_summary(data)
        if args.markdown:
            writers.write_text(args.markdown, text)
        if summary and os.environ.get("GITHUB_STEP_SUMMARY"):
            writers.write_text(os.environ["GITHUB_STEP_SUMMARY"], text, append=True)
    if args.gradescope:
        writers.write_json(args.gradescope, writers.gradescope_results(data, args.weights))
    if args.junit:
        writers.write_text(args.junit, writers.junit_xml([data]))


def run() -> None:
    """Console-script entry point."""
    _exit_now(main())


def _exit_now(code: int) -> None:
    """Leave without the interpreter's teardown: with torch loaded, finalizing every module and waiting for
    the fork server to exit takes longer than the whole check of a small submission. Everything this process
    must leave behind is written and flushed by now; the fork server exits by itself when its socket closes."""
    sys.stdout.flush()
    sys.stderr.flush()
    if _REMOVE_AT_EXIT:
        import shutil

        for folder in _REMOVE_AT_EXIT:
            shutil.rmtree(folder, ignore_errors=True)
    if "gradcheckers.sandbox" in sys.modules:
        sys.modules["gradcheckers.sandbox"].abandon_server()
    os._exit(code)


if __name__ == "__main__":
    run()
