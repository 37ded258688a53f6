"""Which students a course folder holds: every entry gets exactly one row, every other name a reason."""

from __future__ import annotations

from pathlib import Path

from gradcheckers.discovery import Entry, Skipped, discover


def make(root: Path, names: list[str]) -> Path:
    for name in names:
        target = root / name
        if name.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("x = 1\n")
    return root


def test_same_stems_are_graded_under_distinct_names_and_nothing_is_dropped_silently(tmp_path: Path) -> None:
    root = make(tmp_path, ["dave.py", "dave.ipynb", "sam.PY", "_ivan.py", ".hidden.py", "notes.txt", "erin/",
                           "frank/main.py", "frank/helper.py", "gina.py", "gina/submission.py"])
    entries, skipped = discover(root)
    assert entries == [
        Entry("dave.ipynb", root / "dave.ipynb"),
        Entry("dave.py", root / "dave.py"),
        Entry("erin", None, "no .py or .ipynb file in the folder"),
        Entry("frank", root / "frank" / "main.py"),
        Entry("gina.py", root / "gina.py"),
        Entry("gina/", root / "gina" / "submission.py"),
        Entry("sam", root / "sam.PY"),  # the suffix matches whatever its case
    ]
    assert skipped == [
        Skipped(".hidden.py", "hidden (name starts with '.')"),
        Skipped("_ivan.py", "name starts with '_' (kept for the instructor's own files; rename it to grade it)"),
        Skipped("notes.txt", "not a .py or .ipynb file"),
    ]


def test_a_folder_with_several_candidates_is_one_row_that_says_why(tmp_path: Path) -> None:
    root = make(tmp_path, ["heidi/a.py", "heidi/b.ipynb", "ivy/Submission.PY", "ivy/other.py"])
    entries, skipped = discover(root)
    assert entries == [
        Entry("heidi", None, "several candidate files (a.py, b.ipynb); name one submission.py"),
        Entry("ivy", root / "ivy" / "Submission.PY"),
    ]
    assert skipped == []
