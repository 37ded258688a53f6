"""What ``grade`` reads of a course folder (issues 10 and 12), through the real command line: a student folder's
own helper modules come along, and a link never brings in a file from elsewhere."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

SUBMISSIONS = Path(__file__).parent / "submissions"
OPTIONS = ["--examples", "5", "--dtypes", "float64", "--jobs", "1"]
CORRECT = (SUBMISSIONS / "correct.py").read_text()


def grade(course: Path, tmp_path: Path) -> dict[str, dict[str, str]]:
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "gradcheckers", "grade", str(course), *OPTIONS,
                           "--csv", str(out / "grades.csv"), "--reports", str(out / "reports")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    with (out / "grades.csv").open() as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}


def test_a_student_folder_may_import_its_own_helper_module(tmp_path: Path) -> None:
    course = tmp_path / "course"
    (course / "alice").mkdir(parents=True)
    (course / "alice" / "helpers.py").write_text(CORRECT)
    (course / "alice" / "submission.py").write_text("from helpers import grad_W1, grad_b1, grad_W2, grad_b2\n")
    rows = grade(course, tmp_path)
    assert rows["alice"]["status"] == "passed", rows["alice"]


def test_a_link_to_a_file_outside_is_not_graded_and_the_file_is_not_read(tmp_path: Path) -> None:
    solution = tmp_path / "instructor" / "solution.py"
    solution.parent.mkdir()
    solution.write_text(CORRECT)
    course = tmp_path / "course"
    (course / "carol").mkdir(parents=True)
    (course / "bob.py").symlink_to(solution)  # a top-level link
    (course / "carol" / "submission.py").symlink_to(solution)  # a link inside a student's folder
    (course / "dave.py").write_text(CORRECT)
    (course / "erin.py").symlink_to(course / "dave.py")  # a classmate's file, inside the course folder
    rows = grade(course, tmp_path)
    assert rows["dave"]["status"] == "passed"
    for student in ("bob", "carol", "erin"):
        assert rows[student]["status"].startswith("cannot check"), rows[student]
        assert "link" in rows[student]["status"], rows[student]
        assert rows[student]["total"] == "0", rows[student]


def test_a_notebook_runs_every_cell_and_the_stopped_cells_are_named(tmp_path: Path) -> None:
    import json

    from test_cli import STUDENT_NOTEBOOK_NOTES, student_notebook

    course = tmp_path / "course"
    (course / "carol").mkdir(parents=True)
    student_notebook(course / "carol" / "homework.ipynb")
    rows = grade(course, tmp_path)
    assert rows["carol"]["status"] == "passed", rows["carol"]
    report = json.loads((tmp_path / "out" / "reports" / "carol.json").read_text())
    assert report["cell_notes"] == STUDENT_NOTEBOOK_NOTES


def test_check_and_grade_agree_on_an_upper_case_suffix(tmp_path: Path) -> None:
    course = tmp_path / "course"
    course.mkdir()
    (course / "sam.PY").write_text(CORRECT)
    assert grade(course, tmp_path)["sam"]["status"] == "passed"
    done = subprocess.run([sys.executable, "-m", "gradcheckers", "check", str(course / "sam.PY"), *OPTIONS[:4],
                           "--quiet"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"{course / 'sam.PY'}: PASS (4/4)\n"), done.stdout + done.stderr
