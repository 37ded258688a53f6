"""Checking one submission: load it into an isolated worker, then run the property check per parameter.

The pytest plugin (one test item per parameter) and the command line (one report per submission) both go
through :class:`SubmissionSession`, so a submission gets the same verdict from either.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gradcheckers.assignment import ADAPTER_FORWARD_FUNCTION, ADAPTER_FUNCTION, get_assignment
from gradcheckers.errors import LoadError
from gradcheckers.forward_verdict import FORWARD
from gradcheckers.property import (
    CheckSettings,
    Formula,
    ParameterResult,
    _ReferenceCache,
    check_forward,
    check_parameter,
)
from gradcheckers.sandbox import Limits, Worker
from gradcheckers.submission import load_source, resolve_submission

__all__ = ["SubmissionReport", "SubmissionSession", "check_submission"]

# Exit codes of the gate: every gradient agrees / some check failed / the submission cannot be checked /
# gradcheckers itself (or the assignment's definition) failed, which a CI gate must not read as a wrong gradient.
EXIT_PASSED, EXIT_FAILED, EXIT_UNCHECKABLE, EXIT_INTERNAL = 0, 1, 2, 3


@dataclass
class SubmissionReport:
    """Everything the report writers need about one checked submission."""

    submission: str
    # The assignment as given (a bundled name or ``path/to/file.py[:NAME]``): what reproduces the run.
    assignment: str
    settings: CheckSettings
    parameters: dict[str, ParameterResult] = field(default_factory=dict)
    load_error: str | None = None
    load_reason: str | None = None
    output: str = ""
    # Notebooks: the cells that were stopped while loading (a refused call, an exception, the time budget), in the
    # grader's words; a student's output cannot add to them.
    cell_notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    # What each confinement layer achieved in the worker (see gradcheckers.confine), empty if none started.
    isolation: dict[str, str] = field(default_factory=dict)
    # The assignment's parameters, when the caller has the assignment at hand (else looked up by ``assignment``).
    parameter_names: tuple[str, ...] = ()
    internal_error: str | None = None
    # When the check started (ISO 8601, UTC) and each parameter's wall-clock seconds, for JUnit's timestamp/time.
    started: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    seconds: dict[str, float] = field(default_factory=dict)
    # The submission's forward against the assignment's reference forward, for assignments that have one (layers);
    # None where there is none or it was not checked. Not scored, but a wrong forward fails the submission.
    forward: ParameterResult | None = None

    @property
    def passed(self) -> bool:
        return (
            self.load_error is None
            and self.internal_error is None
            and bool(self.parameters)
            and all(r.passed for r in self.parameters.values())
            and (self.forward is None or self.forward.passed)
        )

    @property
    def exit_code(self) -> int:
        if self.internal_error is not None:
            return EXIT_INTERNAL
        if self.load_error is not None:
            return EXIT_UNCHECKABLE
        return EXIT_PASSED if self.passed else EXIT_FAILED

    def to_json(self) -> dict[str, Any]:
        """The JSON report; its schema is a public interface documented in the README."""
        return _encodable({
            "submission": self.submission,
            "assignment": self.assignment,
            "passed": self.passed,
            "seed": self.settings.seed,
            "settings": {
                "examples": self.settings.max_examples,
                "dtypes": list(self.settings.dtypes),
                "devices": None if self.settings.devices is None else list(self.settings.devices),
                "stress": self.settings.stress,
                "rtol": self.settings.rtol,
                "atol": self.settings.atol,
            },
            "load_error": self.load_error,
            "load_reason": self.load_reason,
            "internal_error": self.internal_error,
            "started": self.started,
            "score": self.score(),
            "max_score": float(len(self.parameter_names or get_assignment(self.assignment).parameters)),
            "parameters": {
                name: {**r.to_json(), "seconds": round(self.seconds.get(name, 0.0), 4)}
                for name, r in self.parameters.items()
            },
            "forward": None if self.forward is None else {
                **self.forward.to_json(), "seconds": round(self.seconds.get(FORWARD, 0.0), 4)},
            "output": self.output,
            "cell_notes": list(self.cell_notes),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "isolation": dict(self.isolation),
        })

    def score(self, weights: dict[str, float] | None = None) -> float:
        return float(sum((weights or {}).get(n, 1.0) for n, r in self.parameters.items() if r.passed))


def _encodable(value: Any) -> Any:
    """``value`` with every string made encodable as UTF-8. Messages quote what the submission chose (an
    exception's text, a type's name), which may hold lone surrogates; no writer could encode those."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    return value


class SubmissionSession:
    """One submission in one worker process, checked parameter by parameter."""

    def __init__(
        self,
        spec: str,
        settings: CheckSettings | None = None,
        limits: Limits | None = None,
        *,
        definitions_only: bool = False,
        sibling_imports: bool = False,
        cache: _ReferenceCache | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings or CheckSettings()
        self.limits = limits or Limits()
        self.definitions_only = definitions_only
        self.sibling_imports = sibling_imports
        self.assignment = get_assignment(self.settings.assignment)
        if self.assignment.numpy_only and not self.limits.numpy:
            self.limits = dataclasses.replace(self.limits, numpy=True)
        # The spec, not the assignment's display name: a definition file is found again only by its path.
        self.report = SubmissionReport(spec, self.settings.assignment, self.settings,
                                       parameter_names=self.assignment.parameters)
        self._worker: Worker | None = None
        # A cache shared across submissions (``grade`` passes one per job process) is safe: references are
        # a pure function of the case and the assignment, whose name the caller keys its caches by.
        self._cache = cache if cache is not None else _ReferenceCache(self.assignment)
        self._submission_seconds = 0.0

    # -- lifecycle --------------------------------------------------------------------------------------
    def load(self) -> None:
        """Read, compile and import the submission in its worker; raises LoadError (and records it)."""
        if self._worker is not None:
            return
        if self.report.load_error is not None:
            # Loading once is enough: a submission that hangs at import must not cost a timeout per parameter.
            raise LoadError(self.report.load_error, self.report.load_reason or "error")
        started = time.perf_counter()
        try:
            source = load_source(
                resolve_submission(self.spec), definitions_only=self.definitions_only,
                sibling_imports=self.sibling_imports,
            )
            if self.assignment.adapter is not None:  # appended: the submission's own line numbers stay as they are
                source = dataclasses.replace(source, code=source.code + self.assignment.adapter)
            worker = Worker(source, self.limits)
            try:
                worker.start()
            finally:
                self.report.isolation = worker.isolation
                self.report.cell_notes = list(worker.cell_notes)
        except LoadError as error:
            self.report.load_error = str(error)
            self.report.load_reason = error.reason
            raise
        self._worker = worker
        self.report.timings["worker_start"] = time.perf_counter() - started
        if worker.isolation_seconds == worker.isolation_seconds:  # not NaN
            self.report.timings["isolation"] = worker.isolation_seconds

    def close(self) -> None:
        if self._worker is not None:
            self.report.output = self._worker.output
            self._worker.close()
            self._worker = None

    def __enter__(self) -> SubmissionSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- checking ---------------------------------------------------------------------------------------
    def formula(self, parameter: str) -> Formula | None:
        """A proxy that runs the submission's function for ``parameter`` in the worker, or None if absent."""
        self.load()
        worker = self._worker
        assert worker is not None
        single = f"grad_{parameter}"
        if self.assignment.adapter is not None:  # a layer: the course's forward and backward, through the adapter
            return self._proxy(ADAPTER_FUNCTION, parameter)
        if single in worker.defined:
            return self._proxy(single, None)
        if "gradients" in worker.defined:
            return self._proxy("gradients", parameter)
        return None

    def _proxy(self, function: str, key: str | None) -> Formula:
        worker = self._worker
        assert worker is not None

        def call(*args: Tensor, **hyper: Any) -> object:
            arrays = [a.detach().cpu().numpy() for a in args]
            started = time.perf_counter()
            try:
                result = worker.call(function, arrays, key=key, device=str(args[0].device), kwargs=hyper)
            finally:
                self._submission_seconds += time.perf_counter() - started
            return torch.from_numpy(result)

        return call

    @property
    def checks_forward(self) -> bool:
        """Whether the assignment has a reference forward the submission's forward is checked against (layers)."""
        return self.assignment.forward is not None and self.assignment.adapter is not None

    def check(self, parameter: str) -> ParameterResult:
        """The verdict for one parameter (the worker is started on first use)."""

        def run() -> ParameterResult:
            formula = self.formula(parameter)
            name = f"grad_{parameter}" if self._worker and f"grad_{parameter}" in self._worker.defined else None
            return check_parameter(parameter, formula, settings=self.settings, assignment=self.assignment,
                                   cache=self._cache, function=name)

        result = self._timed(parameter, run)
        self.report.parameters[parameter] = result
        return result

    def check_forward(self) -> ParameterResult | None:
        """The forward's verdict (see :attr:`checks_forward`), or None for an assignment without a forward."""
        if not self.checks_forward:
            return None

        def run() -> ParameterResult:
            self.load()
            return check_forward(self._proxy(ADAPTER_FORWARD_FUNCTION, None), settings=self.settings,
                                 assignment=self.assignment, cache=self._cache)

        self.report.forward = self._timed(FORWARD, run)
        return self.report.forward

    def _timed(self, name: str, run: Callable[[], ParameterResult]) -> ParameterResult:
        """``run()``, its seconds recorded under ``name`` and split into the submission's and ours."""
        started = time.perf_counter()
        spent_before = self._submission_seconds
        result = run()
        total = time.perf_counter() - started
        self.report.seconds[name] = total
        submission = self._submission_seconds - spent_before
        self.report.timings["submission_code"] = self.report.timings.get("submission_code", 0.0) + submission
        self.report.timings["hypothesis_and_oracles"] = (
            self.report.timings.get("hypothesis_and_oracles", 0.0) + total - submission
        )
        return result

    def record_internal_error(self, parameter: str, error: BaseException) -> None:
        """Record an exception of gradcheckers' own (or the assignment's) code while checking ``parameter``."""
        frame = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
        where = f" (at {Path(frame[0].filename).name}:{frame[0].lineno})" if frame else ""
        text = f"checking {parameter}: {type(error).__name__}: {error}{where}"
        self.report.internal_error = text if self.report.internal_error is None else self.report.internal_error

    def check_all(
        self,
        on_result: Callable[[ParameterResult], None] | None = None,
        *,
        parameters: Sequence[str] | None = None,
    ) -> SubmissionReport:
        """Check ``parameters`` (default: all of the assignment's) in order; a load error ends the check."""
        try:
            self.load()
        except LoadError:
            return self.report
        if parameters is None:  # the forward first: a wrong one explains (or hides) every gradient's verdict
            self.check_forward()
        for parameter in parameters or self.assignment.parameters:
            result = self.check(parameter)
            if on_result is not None:
                on_result(result)
        return self.report


def check_submission(
    spec: str,
    settings: CheckSettings | None = None,
    limits: Limits | None = None,
    *,
    definitions_only: bool = False,
    on_result: Callable[[ParameterResult], None] | None = None,
    parameters: Sequence[str] | None = None,
    cache: _ReferenceCache | None = None,
    sibling_imports: bool = False,
) -> SubmissionReport:
    """Check one ``.py``/``.ipynb`` submission (or bundled example name) and return its report."""
    with SubmissionSession(spec, settings, limits, definitions_only=definitions_only, cache=cache,
                           sibling_imports=sibling_imports) as session:
        session.check_all(on_result, parameters=parameters)
    return session.report
