"""Which students a course folder holds: one entry per student, and every other name listed with its reason.

Nothing is dropped silently: a name that is not graded is a :class:`Skipped` with the reason, and two entries
that would claim the same student (``dave.py`` and ``dave.ipynb``, or ``dave.py`` and the folder ``dave/``)
are both graded, each under its full name, so neither result hides the other.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Entry", "Skipped", "discover"]

SUFFIXES = (".py", ".ipynb")
# In a student's folder holding several files, these names are taken as the submission first.
PREFERRED_STEMS = ("submission", "gradients", "homework", "solution", "main")


@dataclass(frozen=True)
class Entry:
    """One student: the file to check, or why there is none (``problem``)."""

    student: str
    path: Path | None
    problem: str | None = None


@dataclass(frozen=True)
class Skipped:
    """A name in the course folder that is not graded, and why."""

    name: str
    reason: str


def _is_submission(path: Path) -> bool:
    # Case-insensitive: sam.PY is a Python file on every system that a student might hand it in from.
    return path.suffix.lower() in SUFFIXES


def _skip_reason(entry: Path) -> str | None:
    if entry.name.startswith("."):
        return "hidden (name starts with '.')"
    if entry.name.startswith("_"):
        return "name starts with '_' (kept for the instructor's own files; rename it to grade it)"
    if entry.is_file() and not _is_submission(entry):
        return "not a .py or .ipynb file"
    if not entry.is_file() and not entry.is_dir():
        return "neither a file nor a folder"
    return None


def _in_folder(folder: Path) -> tuple[Path | None, str | None]:
    found = sorted(p for p in folder.rglob("*") if _is_submission(p) and p.is_file()
                   and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts))
    preferred = [p for p in found if p.stem.lower() in PREFERRED_STEMS]
    if len(found) == 1:
        return found[0], None
    if preferred:
        return preferred[0], None
    if not found:
        return None, "no .py or .ipynb file in the folder"
    names = ", ".join(str(p.relative_to(folder)) for p in found[:5])
    return None, f"several candidate files ({names}); name one submission.py"


def discover(directory: Path) -> tuple[list[Entry], list[Skipped]]:
    """The students of ``directory`` (a file or a folder each), sorted by name, and the names skipped."""
    skipped: list[Skipped] = []
    candidates: list[Path] = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        reason = _skip_reason(entry)
        if reason is None:
            candidates.append(entry)
        else:
            skipped.append(Skipped(entry.name + ("/" if entry.is_dir() else ""), reason))
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for entry in candidates:
        by_stem[entry.stem if entry.is_file() else entry.name].append(entry)
    entries: list[Entry] = []
    for stem, claimants in by_stem.items():
        for entry in claimants:
            # Same stem twice: grade both, under names that say which is which.
            student = stem if len(claimants) == 1 else entry.name + ("/" if entry.is_dir() else "")
            if entry.is_file():
                entries.append(Entry(student, entry))
            else:
                path, problem = _in_folder(entry)
                entries.append(Entry(student, path, problem))
    entries.sort(key=lambda e: e.student)
    return entries, skipped
