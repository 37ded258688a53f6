"""End-to-end test of ``gradcheckers grade``: a small course, graded in parallel, through the real command line."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from test_report import check_junit, check_report

SUBMISSIONS = Path(__file__).parent / "submissions"
PARAMETERS = ("W1", "b1", "W2", "b2")
WEIGHTS = {"W1": 2.0, "b1": 1.0, "W2": 2.0, "b2": 1.0}
# One file or folder per student; the folder holds what each student handed in.
COURSE = {
    "alice.py": "correct.py",
    "bob.py": "gate_wrong_shape.py",  # b1 keeps the batch axis
    "carol/work.py": "gate_nan.py",  # a folder with one file; b2 is NaN
    "dave/submission.py": "correct.py",  # two files: submission.py is the one
    "dave/notes.py": None,
    "erin/": None,  # an empty folder
    "frank.py": "syntax_error.py",
    "grace.py": "gate_hang.py",  # W1 and b1 never return
    "heidi/a.py": "correct.py",  # two candidates and neither is named submission.py
    "heidi/b.py": "correct.py",
    "_template.py": "correct.py",  # the instructor's, not a student's: skipped
}
# student: (verdict per parameter, or None when the submission cannot be checked)
EXPECTED: dict[str, dict[str, str | None] | None] = {
    "alice": {"W1": None, "b1": None, "W2": None, "b2": None},
    "bob": {"W1": None, "b1": "shape", "W2": None, "b2": None},
    "carol": {"W1": None, "b1": None, "W2": None, "b2": "non-finite"},
    "dave": {"W1": None, "b1": None, "W2": None, "b2": None},
    "erin": None,
    "frank": None,
    "grace": {"W1": "timeout", "b1": "timeout", "W2": None, "b2": None},
    "heidi": None,
}
OPTIONS = ["--jobs", "2", "--timeout", "3", "--examples", "10", "--weights", "W1=2,b1=1,W2=2,b2=1"]


def make_course(root: Path) -> Path:
    course = root / "course"
    for name, source in COURSE.items():
        target = course / name
        if name.endswith("/"):
            target.mkdir(parents=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source is None:
            target.write_text("x = 1\n")
        else:
            shutil.copy(SUBMISSIONS / source, target)
    return course


def test_grade_a_course(tmp_path: Path) -> None:
    course = make_course(tmp_path)
    gradebook, reports_dir, junit = tmp_path / "gradebook.csv", tmp_path / "reports", tmp_path / "course.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "gradcheckers", "grade", str(course), *OPTIONS, "--csv", str(gradebook),
         "--reports", str(reports_dir), "--junit", str(junit)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr

    # Progress: plain lines (stderr is not a terminal here), ending with the total.
    progress = proc.stderr.splitlines()
    assert progress and all(re.fullmatch(r"graded \d/8 submissions in \d+s \(\d+/min, about \d+s left\)", line)
                            for line in progress)
    assert progress[-1].startswith("graded 8/8 ")

    # One JSON report per student, valid, with the verdicts each submission deserves.
    reports = {path.stem: json.loads(path.read_text()) for path in sorted(reports_dir.glob("*.json"))}
    assert list(reports) == list(EXPECTED)
    for student, data in reports.items():
        check_report(data)
        assert data["student"] == student
        expected = EXPECTED[student]
        if expected is None:
            assert data["load_error"] and data["parameters"] == {}
        else:
            assert {p: r["reason"] for p, r in data["parameters"].items()} == expected, student
            assert data["score"] == sum(WEIGHTS[p] for p, reason in expected.items() if reason is None)
            assert data["max_score"] == 6.0
    assert "several candidate files (a.py, b.py)" in reports["heidi"]["load_error"]
    assert "no .py or .ipynb file" in reports["erin"]["load_error"]
    assert "syntax error at line 5" in reports["frank"]["load_error"]

    # The gradebook: one row per student, one column per parameter (weighted), the total.
    with gradebook.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["student"] for row in rows] == list(EXPECTED)
    assert list(rows[0]) == ["student", *PARAMETERS, "total", "max_total", "status"]
    table = {row["student"]: row for row in rows}
    assert [table["bob"][p] for p in (*PARAMETERS, "total", "max_total")] == ["2", "0", "2", "1", "5", "6"]
    assert table["grace"]["total"] == "3" and table["grace"]["status"] == "failed: W1 (timeout), b1 (timeout)"
    assert table["alice"]["status"] == "passed" and table["dave"]["total"] == "6"
    assert table["frank"]["total"] == "0" and table["frank"]["status"].startswith("cannot check: ")
    assert all("\n" not in row["status"] for row in rows)  # one line per student, even for a syntax error

    check_junit(junit.read_text(), list(reports.values()))

    # The summary table on stdout.
    lines = proc.stdout.strip().splitlines()
    assert re.fullmatch(r"student +W1 +b1 +W2 +b2 +total", lines[0])
    assert re.fullmatch(r"bob +ok +FAIL +ok +ok +5/6", lines[2])
    assert re.fullmatch(r"erin +- +- +- +- +0/6 +\(cannot check\)", lines[5])
    assert lines[9] == ("skipped _template.py: name starts with '_' (kept for the instructor's own files; rename "
                        "it to grade it)")
    assert lines[-3] == ("8 students in the gradebook: 2 passed, 3 failed, 3 not checkable, 0 grader infrastructure "
                         "errors.")
    assert re.fullmatch(r"This run: 8 graded in [\d.]+s \(\d+/min\) \(0 regraded\), 0 resumed unchanged, 0 retried "
                        r"after a lost job process, 1 names skipped\.", lines[-2])
    assert lines[-1] == f"Gradebook: {tmp_path / 'gradebook.sqlite'}; exports: {gradebook}, {reports_dir}/, {junit}"

    # One bad submission never skews another: each verdict is what checking that submission alone gives.
    from gradcheckers.cli import _limits, _parser, _settings
    from gradcheckers.session import check_submission

    args = _parser().parse_args(["grade", str(course), *OPTIONS])
    for student, name in (("alice", "alice.py"), ("bob", "bob.py"), ("carol", "carol/work.py")):
        alone = check_submission(str(course / name), _settings(args), _limits(args)).to_json()
        def verdicts(report: dict) -> dict:  # every field but the time each parameter took
            return {p: {k: v for k, v in r.items() if k != "seconds"} for p, r in report["parameters"].items()}

        assert verdicts(alone) == verdicts(reports[student]), student
