"""The gradebook: committed per result, keyed by content and settings, exports rewritten whole."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gradcheckers.gradebook import (
    INFRASTRUCTURE,
    SCHEMA_VERSION,
    Gradebook,
    GradebookError,
    export_csv,
    export_junit,
    export_reports,
)


def report(student: str, passed: dict[str, bool] | None = None, load_error: str | None = None,
           load_reason: str | None = None) -> dict[str, Any]:
    parameters = {p: {"passed": ok, "reason": None if ok else "mismatch"} for p, ok in (passed or {}).items()}
    return {"student": student, "submission": f"{student}.py", "passed": bool(passed) and all((passed or {}).values()),
            "load_error": load_error, "load_reason": load_reason, "parameters": parameters, "seed": 0,
            "score": float(sum((passed or {}).values())), "max_score": 2.0}


def test_a_result_stands_only_for_the_same_bytes_and_settings(tmp_path: Path) -> None:
    with Gradebook(tmp_path / "g.sqlite") as book:
        assert book.record(report("ann", {"W1": True, "b1": True}), "c1", "s1", 1) == "passed"
        assert book.current("ann", "c1", "s1")
        assert not book.current("ann", "c2", "s1") and not book.current("ann", "c1", "s2")
        assert not book.current("bob", "c1", "s1")
        book.record(report("bob", load_error="gone twice", load_reason="infrastructure"), "c1", "s1", 2)
        assert not book.current("bob", "c1", "s1")  # an infrastructure error is always graded again
        assert book.rows()[1][:3] == ("bob", INFRASTRUCTURE, 2)
    # Committed: another connection sees every row.
    with sqlite3.connect(tmp_path / "g.sqlite") as db:
        assert [r[0] for r in db.execute("SELECT student FROM results ORDER BY student")] == ["ann", "bob"]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_exports_are_queries_over_the_gradebook(tmp_path: Path) -> None:
    with Gradebook(tmp_path / "g.sqlite") as book:
        book.set_meta(parameters=["W1", "b1"])
        book.record(report("ann", {"W1": True, "b1": False}), "c", "s", 1)
        book.record(report("a b", {"W1": True, "b1": True}), "c", "s", 1)
        book.record(report("a_b", load_error="syntax error\n  at line 2"), "c", "s", 1)
        export_csv(book, tmp_path / "out" / "g.csv", {"W1": 2.0})
        export_reports(book, tmp_path / "reports", {"W1": 2.0})
        export_junit(book, tmp_path / "g.xml")
    rows = list(csv.reader((tmp_path / "out" / "g.csv").open()))
    assert rows == [
        ["student", "W1", "b1", "total", "max_total", "status"],
        ["a b", "2", "1", "3", "3", "passed"],
        ["a_b", "0", "0", "0", "3", "cannot check: syntax error at line 2"],
        ["ann", "2", "0", "2", "3", "failed: b1 (mismatch)"],
    ]
    names = sorted(p.name for p in (tmp_path / "reports").iterdir())
    assert names == ["a_b.json", "a_b_.json", "ann.json"]  # distinct files, no temporary left behind
    assert json.loads((tmp_path / "reports" / "ann.json").read_text())["score"] == 2.0
    assert (tmp_path / "g.xml").read_text().startswith("<?xml")


def test_a_file_that_is_not_a_gradebook_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "junk.sqlite").write_text("not a database at all, but long enough to be read as a header" * 4)
    with pytest.raises(GradebookError, match="cannot be used as a gradebook"):
        Gradebook(tmp_path / "junk.sqlite")
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(GradebookError, match="written by a newer gradcheckers"):
        Gradebook(newer)


def test_the_gradebook_command_shows_and_exports_without_grading(tmp_path: Path) -> None:
    import subprocess
    import sys

    with Gradebook(tmp_path / "g.sqlite") as book:
        book.set_meta(parameters=["W1", "b1"], weights={"W1": 3.0})
        book.record(report("ann", {"W1": True, "b1": False}), "c", "s", 2)
        book.set_skipped([("_tpl.py", "name starts with '_'")])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gradcheckers", "gradebook", *args], capture_output=True,
                              text=True, timeout=120)

    shown = run("show", str(tmp_path / "g.sqlite"))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("ann ") and "3/4" in lines[0]
    assert lines[0].endswith("failed: b1 (mismatch)  [2 attempts]")
    assert lines[1] == "skipped _tpl.py: name starts with '_'"
    exported = run("export", str(tmp_path / "g.sqlite"), "--csv", str(tmp_path / "out.csv"), "--weights", "W1=1,b1=1")
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "out.csv").read_text().splitlines()[1] == "ann,1,0,1,2,failed: b1 (mismatch)"
    missing = run("show", str(tmp_path / "none.sqlite"))
    assert (missing.returncode, missing.stderr.strip()) == (
        2, f"gradcheckers gradebook: no such gradebook: {tmp_path / 'none.sqlite'}")
