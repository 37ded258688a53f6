"""What one sandboxed worker may use: a plain value object, importable without torch or the sandbox itself
(the CLI builds one while parsing its arguments; the sandbox and its replies both read it)."""

from __future__ import annotations

from dataclasses import dataclass

from gradcheckers.errors import InvalidArgument

__all__ = ["ISOLATION_LEVELS", "Limits"]

# "best": every confinement layer the kernel offers; "strict": refuse to run a submission when one is missing.
ISOLATION_LEVELS = ("best", "strict")


@dataclass(frozen=True)
class Limits:
    """What one worker may use. Times are in seconds."""

    call_timeout: float = 10.0  # wall clock for one call of a submitted function
    load_timeout: float = 30.0  # wall clock to run the submission's top-level code
    memory_mb: int = 2048  # address space a worker may add to what it maps after importing torch
    cpu_seconds: int = 600  # CPU time of one worker process (RLIMIT_CPU)
    output_limit: int = 64 * 1024  # bytes of captured stdout+stderr kept; the rest is counted and dropped
    allow_autograd: bool = False
    numpy: bool = False  # numpy mode: the worker has no torch at all (its fork server never imports it)
    isolation: str = "best"  # "best": every confinement layer available; "strict": refuse when one is missing

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATION_LEVELS:
            raise InvalidArgument(f"isolation={self.isolation!r}: expected one of {', '.join(ISOLATION_LEVELS)}")
        for name in ("call_timeout", "load_timeout", "memory_mb", "cpu_seconds", "output_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidArgument(f"{name}={value!r}: expected a positive number")
        for name in ("memory_mb", "cpu_seconds", "output_limit"):
            if not isinstance(getattr(self, name), int):
                raise InvalidArgument(f"{name}={getattr(self, name)!r}: expected a positive integer")
