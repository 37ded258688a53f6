"""``gradcheckers check`` and ``grade`` with ``--assignment FILE.py``, through the real command line.

Issue 11, item 1: both crashed with a traceback (exit 1) on the shipped template, because the report looked the
assignment up again by its name, which only bundled assignments have.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

from test_cli import FAST
from test_cli import gradcheckers as run_cli

import gradcheckers

SUBMISSIONS = Path(__file__).parent / "submissions"
TEMPLATE = Path(gradcheckers.__file__).parent / "examples" / "assignments" / "template.py"


def test_check_with_the_template_file_passes_a_correct_submission(tmp_path: Path) -> None:
    run = run_cli("check", str(SUBMISSIONS / "ridge_correct.py"), "--assignment", str(TEMPLATE), *FAST,
                  tmp_path=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report["passed"] and set(run.report["parameters"]) == {"W", "b"}
    assert run.report["max_score"] == 2.0 and run.report["score"] == 2.0


def test_check_with_the_template_file_fails_a_wrong_one_and_names_the_file_to_reproduce(tmp_path: Path) -> None:
    run = run_cli("check", str(SUBMISSIONS / "ridge_wrong_b.py"), "--assignment", str(TEMPLATE), *FAST,
                  tmp_path=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    b = run.report["parameters"]["b"]
    assert not b["passed"] and b["reason"] in ("shape", "mismatch")
    assert run.report["parameters"]["W"]["passed"]
    # The command that reproduces the failure must name the file, not the assignment's display name.
    assert f"--assignment {TEMPLATE}" in run.stdout


def test_grade_with_the_template_file(tmp_path: Path) -> None:
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(SUBMISSIONS / "ridge_correct.py", course / "alice.py")
    shutil.copy(SUBMISSIONS / "ridge_wrong_b.py", course / "bob.py")
    run = run_cli("grade", str(course), "--assignment", str(TEMPLATE), "--jobs", "1", *FAST,
                  "--csv", str(tmp_path / "book.csv"), "--reports", str(tmp_path / "reports"), tmp_path=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {row["student"]: row for row in csv.DictReader((tmp_path / "book.csv").open())}
    assert set(rows) == {"alice", "bob"}
    alice = json.loads((tmp_path / "reports" / "alice.json").read_text())
    bob = json.loads((tmp_path / "reports" / "bob.json").read_text())
    assert alice["passed"] and alice["max_score"] == 2.0
    assert not bob["passed"] and not bob["parameters"]["b"]["passed"]


# --- a layer assignment: the course's forward and backward, with named sizes and hyperparameters -----------------


def test_check_a_correct_layer_submission(tmp_path: Path) -> None:
    run = run_cli("check", str(SUBMISSIONS / "layer_affine_correct.py"), "--assignment", "affine", *FAST,
                  tmp_path=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert set(run.report["parameters"]) == {"x", "w", "b"} and run.report["max_score"] == 3.0


def test_check_a_wrong_layer_submission_names_the_input_and_the_smallest_named_sizes(tmp_path: Path) -> None:
    run = run_cli("check", str(SUBMISSIONS / "layer_affine_wrong_db.py"), "--assignment", "affine", *FAST,
                  tmp_path=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    b = run.report["parameters"]["b"]
    assert not b["passed"] and run.report["parameters"]["x"]["passed"] and run.report["parameters"]["w"]["passed"]
    case = b["counterexample"]
    assert {k: case[k] for k in ("N", "A", "B", "M")} in ({"N": 1, "A": 1, "B": 1, "M": 2},
                                                          {"N": 2, "A": 1, "B": 1, "M": 1}), case
    assert case["dtype"] == "float64" and case["seed"] >= 0


def test_a_hyperparameter_reaches_the_submission_and_the_counterexample_through_the_gate(tmp_path: Path) -> None:
    run = run_cli("check", str(SUBMISSIONS / "layer_conv_wrong_stride.py"), "--assignment", "conv",
                  "--timeout", "30", "--examples", "8", "--parameter", "w", tmp_path=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    w = run.report["parameters"]["w"]
    assert not w["passed"] and w["counterexample"]["stride"] == 2, w
    assert "stride=2" in run.stdout


def _grade_affine_course(tmp_path: Path, students: dict[str, str]) -> dict[str, dict[str, Any]]:
    """`grade --assignment affine` on a course of the named fixture submissions; each student's JSON report."""
    course = tmp_path / "course"
    course.mkdir()
    for student, fixture in students.items():
        shutil.copy(SUBMISSIONS / fixture, course / f"{student}.py")
    run = run_cli("grade", str(course), "--assignment", "affine", "--jobs", "1", *FAST,
                  "--csv", str(tmp_path / "book.csv"), "--reports", str(tmp_path / "reports"), tmp_path=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    return {s: json.loads((tmp_path / "reports" / f"{s}.json").read_text()) for s in students}


def test_grade_a_course_on_a_layer_assignment(tmp_path: Path) -> None:
    reports = _grade_affine_course(tmp_path, {"alice": "layer_affine_correct.py", "bob": "layer_affine_wrong_db.py"})
    alice, bob = reports["alice"], reports["bob"]
    assert alice["passed"] and alice["max_score"] == 3.0
    assert [name for name, r in bob["parameters"].items() if not r["passed"]] == ["b"]


def test_assignments_lists_every_layer_one_line_each(tmp_path: Path) -> None:
    run = run_cli("assignments", tmp_path=tmp_path)
    assert run.returncode == 0
    lines = run.stdout.splitlines()
    from gradcheckers.models.layers import LAYERS

    for name, layer in LAYERS.items():
        assert sum(line.split()[0] == name for line in lines) == 1, name
        assert any(line.startswith(name) and layer.title in line for line in lines), name


# --- the forward: a layer assignment has a reference forward, and the gate checks the submission's against it ------


def test_a_correct_layer_submission_s_forward_passes_and_the_report_says_so(tmp_path: Path) -> None:
    run = run_cli("check", str(SUBMISSIONS / "layer_affine_correct.py"), "--assignment", "affine", *FAST,
                  tmp_path=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    forward = run.report["forward"]
    assert forward["passed"] and forward["reason"] is None and forward["examples"] >= 1, forward
    assert set(run.report["parameters"]) == {"x", "w", "b"}  # the forward is not a parameter: not scored
    assert "forward" in run.stdout and "PASS" in run.stdout.split("forward", 1)[1].splitlines()[0]
    assert "Warning" not in run.report["output"]  # the adapter appended to the submission compiles cleanly


def test_a_wrong_forward_fails_the_submission_even_when_every_gradient_passes(tmp_path: Path) -> None:
    run = run_cli("check", str(SUBMISSIONS / "layer_affine_wrong_forward.py"), "--assignment", "affine", *FAST,
                  tmp_path=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert all(r["passed"] for r in run.report["parameters"].values()), run.report["parameters"]
    assert run.report["score"] == run.report["max_score"] == 3.0
    forward = run.report["forward"]
    assert not forward["passed"] and forward["reason"] == "mismatch" and not run.report["passed"]
    assert {k: forward["counterexample"][k] for k in ("N", "A", "B", "M")} == {"N": 1, "A": 1, "B": 1, "M": 1}
    assert "disagrees with the reference forward" in forward["message"]
    # Said plainly, before the gradients: the gradients were judged against the reference forward, not this one.
    assert "forward: FAILED (mismatch)" in run.stdout
    assert "the gradients below are judged against the reference forward" in run.stdout
    gradescope = json.loads((tmp_path / "report.gradescope").read_text())
    shown = gradescope["tests"][0]  # the student sees it first, at no points: the score counts the gradients
    assert shown["name"] == "the forward (not scored)" and shown["status"] == "failed" and shown["max_score"] == 0
    assert gradescope["score"] == 3.0


def test_an_assignment_without_a_reference_forward_reports_no_forward_verdict(tmp_path: Path) -> None:
    run = run_cli("check", str(SUBMISSIONS / "ridge_correct.py"), "--assignment", str(TEMPLATE), *FAST,
                  tmp_path=tmp_path)
    assert run.returncode == 0 and run.report["forward"] is None


def test_grade_records_a_wrong_forward_in_the_gradebook(tmp_path: Path) -> None:
    reports = _grade_affine_course(tmp_path, {"alice": "layer_affine_correct.py",
                                                 "carol": "layer_affine_wrong_forward.py"})
    carol = reports["carol"]
    assert not carol["passed"] and not carol["forward"]["passed"]
    rows = {row["student"]: row for row in csv.DictReader((tmp_path / "book.csv").open())}
    assert "forward (mismatch)" in rows["carol"]["status"], rows["carol"]
    assert reports["alice"]["forward"]["passed"]


def test_a_loss_layer_is_submitted_as_the_course_writes_it_and_its_forward_is_the_loss(tmp_path: Path) -> None:
    # Observed: the gate asked for softmax_loss_forward/softmax_loss_backward, which no course writes
    # (`loss, dx = softmax_loss(x, y)`), and failed every check with a NameError.
    run = run_cli("check", str(SUBMISSIONS / "layer_softmax_loss_correct.py"), "--assignment", "softmax-loss", *FAST,
                  tmp_path=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report["forward"]["passed"] and run.report["parameters"]["x"]["passed"]
