"""The course gradebook: one SQLite file (standard library ``sqlite3``, WAL), every result committed as it arrives.

A result is keyed by the student, the content hash of what was graded and a hash of the settings and the
gradcheckers version, so a second run knows which results still hold. The CSV, the per-student JSON reports
and the JUnit XML are exports: queries over the gradebook, each file rewritten atomically (written beside
its target, then renamed over it), so that whatever reads them sees a complete file for what was graded.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "Gradebook",
    "GradebookError",
    "export_csv",
    "export_junit",
    "export_reports",
    "status_of",
]

# Bump with a migration below whenever the tables change; a newer gradebook is refused, not misread.
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    student TEXT PRIMARY KEY,
    submission TEXT,
    content_hash TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    graded_at TEXT NOT NULL,
    report TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    student TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS skipped (name TEXT PRIMARY KEY, reason TEXT NOT NULL);
"""
INFRASTRUCTURE = "grader infrastructure error"
STATUSES = ("passed", "failed", "not checkable", INFRASTRUCTURE)
# A writer that holds the file (another `grade` on the same gradebook) is waited for this long, then refused.
_BUSY_TIMEOUT_S = 30.0


class GradebookError(Exception):
    """The gradebook file cannot be used (not SQLite, a newer schema, unwritable); one line says why."""


def status_of(data: Mapping[str, Any]) -> str:
    """One of :data:`STATUSES` for a JSON report."""
    if data.get("load_reason") == "infrastructure":
        return INFRASTRUCTURE
    if data.get("load_error"):
        return "not checkable"
    return "passed" if data.get("passed") else "failed"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Gradebook:
    """An open gradebook. Use as a context manager; every write is its own committed transaction."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise GradebookError(f"{self.path} was written by a newer gradcheckers (schema {version}; this one "
                                     f"reads up to {SCHEMA_VERSION}): upgrade gradcheckers")
            # WAL: a reader (`gradebook show` during a run) never blocks the writer, and a crash mid-write
            # loses at most the transaction in flight. NORMAL sync is durable across a crash of the process.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)  # idempotent: CREATE TABLE IF NOT EXISTS
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as error:
            raise GradebookError(f"{self.path} cannot be used as a gradebook: {error}") from None

    def __enter__(self) -> Gradebook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> Any:
        db = self._db

        class _Transaction:
            def __enter__(self) -> None:
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind: object, *rest: object) -> None:
                db.execute("ROLLBACK" if kind is not None else "COMMIT")

        return _Transaction()

    # --- reading ------------------------------------------------------------------------------------------

    def current(self, student: str, content_hash: str, settings_hash: str) -> bool:
        """Whether the gradebook holds a result of this student for these bytes and these settings that
        stands (a grader infrastructure error never stands: it is graded again)."""
        row = self._db.execute(
            "SELECT status FROM results WHERE student = ? AND content_hash = ? AND settings_hash = ?",
            (student, content_hash, settings_hash),
        ).fetchone()
        return row is not None and row[0] != INFRASTRUCTURE

    def reports(self) -> Iterator[dict[str, Any]]:
        """Every student's JSON report, by student name."""
        for (report,) in self._db.execute("SELECT report FROM results ORDER BY student"):
            yield json.loads(report)

    def rows(self) -> list[tuple[str, str, int, str]]:
        """(student, status, attempts, graded_at) per student, by name."""
        return list(self._db.execute("SELECT student, status, attempts, graded_at FROM results ORDER BY student"))

    def events(self, student: str | None = None) -> list[tuple[str, str, str | None]]:
        """(student, event, detail) in the order they happened."""
        query = "SELECT student, event, detail FROM events" + (" WHERE student = ?" if student else "")
        return list(self._db.execute(query + " ORDER BY id", (student,) if student else ()))

    def skipped(self) -> list[tuple[str, str]]:
        return list(self._db.execute("SELECT name, reason FROM skipped ORDER BY name"))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # --- writing --------------------------------------------------------------------------------------------

    def record(self, data: Mapping[str, Any], content_hash: str, settings_hash: str, attempts: int) -> str:
        """Store one student's JSON report (replacing an earlier one) and log it; returns its status."""
        status = status_of(data)
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (data["student"], data.get("submission"), content_hash, settings_hash, status, attempts, _now(),
                 json.dumps(data, allow_nan=False)),
            )
            self._log(data["student"], "graded", status)
        return status

    def log(self, student: str, event: str, detail: str | None = None) -> None:
        with self._transaction():
            self._log(student, event, detail)

    def _log(self, student: str, event: str, detail: str | None) -> None:
        self._db.execute("INSERT INTO events (at, student, event, detail) VALUES (?, ?, ?, ?)",
                         (_now(), student, event, detail))

    def set_skipped(self, skipped: Sequence[tuple[str, str]]) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM skipped")
            self._db.executemany("INSERT OR REPLACE INTO skipped VALUES (?, ?)", skipped)

    def set_meta(self, **values: Any) -> None:
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                 [(k, json.dumps(v)) for k, v in values.items()])


# --- exports ------------------------------------------------------------------------------------------------


def _atomic_write(path: str | os.PathLike[str], text: str) -> None:
    """``text`` into ``path`` all at once: a reader sees the old file or the new one, never half of one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", errors="replace", newline="") as file:
            file.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _scored(data: dict[str, Any], parameters: Sequence[str], weights: Mapping[str, float]) -> dict[str, Any]:
    # As `check --weights` does, so the reports, the CSV and the summary agree.
    if weights:
        params = data.get("parameters", {})
        data["score"] = float(sum(weights.get(p, 1.0) for p, r in params.items() if r["passed"]))
        data["max_score"] = float(sum(weights.get(p, 1.0) for p in parameters))
    return data


def scored_reports(book: Gradebook, weights: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    parameters = book.meta("parameters", [])
    return [_scored(data, parameters, weights or {}) for data in book.reports()]


def export_csv(book: Gradebook, path: str | os.PathLike[str], weights: Mapping[str, float] | None = None) -> None:
    """One row per student: the weighted score of each parameter, the total, the maximum, the status."""
    weights = weights or {}
    parameters: list[str] = book.meta("parameters", [])
    max_total = sum(weights.get(p, 1.0) for p in parameters)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["student", *parameters, "total", "max_total", "status"])
    for data in book.reports():
        params = data.get("parameters", {})
        row = [weights.get(p, 1.0) if params.get(p, {}).get("passed") else 0.0 for p in parameters]
        writer.writerow([data["student"], *[f"{v:g}" for v in row], f"{sum(row):g}", f"{max_total:g}",
                         status_line(data, parameters)])
    _atomic_write(path, out.getvalue())


def status_line(data: Mapping[str, Any], parameters: Sequence[str]) -> str:
    """The status column: one line per student (a load error's message spans lines: a caret, a traceback)."""
    status = status_of(data)
    if status in ("not checkable", INFRASTRUCTURE):
        problem = " ".join(str(data.get("load_error")).split())[:200]
        return f"{'cannot check' if status == 'not checkable' else status}: {problem}"
    params = data.get("parameters", {})
    if status == "passed":
        return status
    forward = data.get("forward") or {"passed": True}  # a layer's forward fails the submission, unscored
    failed = [f"forward ({forward.get('reason')})"] if not forward["passed"] else []
    return "failed: " + ", ".join(failed + [f"{p} ({params[p].get('reason')})" for p in parameters
                                            if p in params and not params[p]["passed"]])


def _safe_name(student: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", student) or "student"


def export_reports(book: Gradebook, directory: str | os.PathLike[str],
                   weights: Mapping[str, float] | None = None) -> None:
    """One ``<student>.json`` per student (names made safe for a file system, and distinct)."""
    used: set[str] = set()
    for data in scored_reports(book, weights):
        name = _safe_name(data["student"])
        while name.lower() in used:  # "a b" and "a_b" (or Sam and sam) must not overwrite each other
            name += "_"
        used.add(name.lower())
        _atomic_write(Path(directory) / f"{name}.json", json.dumps(data, indent=2, allow_nan=False) + "\n")


def export_junit(book: Gradebook, path: str | os.PathLike[str]) -> None:
    from gradcheckers.report import junit_xml

    _atomic_write(path, junit_xml(list(book.reports())))
