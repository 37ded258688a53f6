"""The exception types of gradcheckers, in one place so callers can catch them precisely."""

from __future__ import annotations

__all__ = [
    "GradcheckersError",
    "GradientMismatchError",
    "InvalidArgument",
    "LoadError",
    "SubmissionFailure",
]


class GradcheckersError(Exception):
    """Base class of every error gradcheckers raises on purpose."""


class InvalidArgument(GradcheckersError, TypeError, ValueError):
    """A public function was called with an argument it cannot use.

    The message names the argument as ``name=value`` and says what would be accepted, in the manner of
    ``hypothesis.errors.InvalidArgument``.
    """


class GradientMismatchError(AssertionError):
    """An analytic gradient disagrees with the references (autograd and finite differences)."""


# Why a submission could not be loaded; the JSON report's ``load_reason``.
LOAD_REASONS = ("not-found", "unreadable", "syntax", "error", "exit", "crash", "timeout", "memory", "forbidden",
                "internal", "infrastructure")


class LoadError(GradcheckersError):
    """A submission cannot be checked at all: no such file, a syntax error, it died while importing.

    ``reason`` is one of :data:`LOAD_REASONS`.
    """

    def __init__(self, message: str, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


# The reasons a single parameter's check can fail. They are part of the JSON report's schema.
FAILURE_REASONS = (
    "mismatch",
    "shape",
    "non-finite",
    "error",
    "timeout",
    "memory",
    "missing",
    "forbidden",
    "mutated-input",
)


class SubmissionFailure(GradcheckersError):
    """One call of a submitted gradient function failed in a way that is the submission's fault.

    ``reason`` is one of :data:`FAILURE_REASONS`; ``message`` is one readable line (or a few) saying what
    happened and what to do.
    """

    def __init__(self, reason: str, message: str) -> None:
        if reason not in FAILURE_REASONS:
            raise ValueError(f"reason={reason!r} is not one of {FAILURE_REASONS}")
        super().__init__(message)
        self.reason = reason
        self.message = message
