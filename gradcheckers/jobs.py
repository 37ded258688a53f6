"""One submission as a unit of work: plain data in (its bytes and the settings), one JSON report out.

The same :func:`run_job` runs in a local job process and on a Dask worker on another machine, so a
submission gets the same verdict wherever it is graded, and the same verdict as ``gradcheckers check``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gradcheckers import __version__

__all__ = ["GradeSpec", "Job", "run_job", "settings_digest"]


@dataclass(frozen=True)
class Job:
    """A student's submission as data: no path that the machine doing the work would need to see."""

    student: str
    filename: str | None  # where the submission was found, as the reports name it
    code: bytes | None  # its bytes; None when there is nothing to check (``problem`` says why)
    problem: str | None = None
    # The modules beside it in the student's own folder (name, source), which it may import; read by the
    # parent under the same rules as the submission (regular files inside that folder, bounded in size).
    siblings: tuple[tuple[str, str], ...] = ()

    @property
    def digest(self) -> str:
        """The content hash the gradebook keys a result by (a changed helper module is a changed submission)."""
        content = self.code if self.code is not None else f"problem: {self.problem}".encode()
        digest = hashlib.sha256(content)
        for name, code in self.siblings:
            digest.update(f"\0{name}\0".encode() + code.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()


@dataclass(frozen=True)
class GradeSpec:
    """Everything besides the submission that decides its verdict, and how the work is done."""

    settings: Any  # CheckSettings
    limits: Any  # Limits
    definitions_only: bool = False
    parameters: tuple[str, ...] | None = None
    # Share references across the submissions one process grades (item 4 of issue 12); verdicts are the same.
    reuse: bool = True


def settings_digest(spec: GradeSpec) -> str:
    """A hash of what decides verdicts (settings, limits, options) and of the gradcheckers version."""
    decides = {
        "settings": {k: (dict(v) if k == "size_bounds" else v) for k, v in asdict(spec.settings).items()},
        "limits": asdict(spec.limits),
        "definitions_only": spec.definitions_only,
        "parameters": spec.parameters,
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(decides, sort_keys=True, default=str).encode()).hexdigest()


# One reference cache per assignment in each process that grades: with one seed, every submission sees the
# same cases until it fails, so the references of those cases are computed once and reused.
_CACHES: dict[str, Any] = {}


def _cache(spec: GradeSpec) -> Any:
    if not spec.reuse:
        return None
    from gradcheckers.assignment import get_assignment
    from gradcheckers.property import _ReferenceCache

    name = spec.settings.assignment
    # A Dask worker outlives a run: an assignment given as a file is keyed by its content too, so an edited
    # definition never meets the references of the old one.
    key = name + (":" + hashlib.sha256(Path(name).read_bytes()).hexdigest() if Path(name).is_file() else "")
    if key not in _CACHES:
        # 8192 cases: ~100 examples per parameter and a few hundred shrink steps per failing submission
        # stay in it, and each case's tensors are a few KiB at the default sizes (at most ~100 MiB in all).
        _CACHES[key] = _ReferenceCache(get_assignment(name), size=8192)
    return _CACHES[key]


def _replace_text(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: _replace_text(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_text(v, old, new) for v in value]
    return value


def run_job(job: Job, spec: GradeSpec) -> dict[str, Any]:
    """The JSON report of ``job``'s submission, with ``student`` and ``seconds``; never raises for its sake."""
    from gradcheckers.session import SubmissionReport, check_submission

    started = time.perf_counter()
    if job.code is None or job.filename is None:
        report = SubmissionReport(job.filename or job.student, spec.settings.assignment, spec.settings,
                                  load_error=job.problem or "nothing to check", load_reason="not-found")
        data = report.to_json()
    else:
        with tempfile.TemporaryDirectory(prefix="gradcheckers-job-") as tmp:
            # The submission's own name, its suffix in lower case (sam.PY is a Python file).
            original = Path(job.filename)
            path = Path(tmp) / (original.stem + original.suffix.lower())
            path.write_bytes(job.code)
            for name, code in job.siblings:
                (Path(tmp) / f"{name}.py").write_text(code, encoding="utf-8", errors="surrogatepass")
            try:
                report = check_submission(str(path), spec.settings, spec.limits, definitions_only=spec.definitions_only,
                                          parameters=spec.parameters, cache=_cache(spec),
                                          sibling_imports=bool(job.siblings))
            except Exception as error:  # never lose a student's row to a bug of ours: report it as such
                report = SubmissionReport(str(path), spec.settings.assignment, spec.settings,
                                          load_error=f"internal error of gradcheckers: {type(error).__name__}: "
                                          f"{error}", load_reason="internal")
            # Messages name the file as the instructor knows it, not the private copy graded here.
            data = _replace_text(report.to_json(), str(path), job.filename)
    data["student"] = job.student
    data["seconds"] = round(time.perf_counter() - started, 3)
    return data
