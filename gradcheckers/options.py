"""Validators of option values, shared by the command line and the pytest plugin.

Each takes the text of an option and returns its value or raises ``argparse.ArgumentTypeError``, which both
argparse and pytest's option parser print as a one-line usage error. This module imports nothing heavy: the
plugin loads it in every pytest run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = [
    "DEVICE_CHOICES",
    "DTYPE_CHOICES",
    "name_list",
    "non_negative_float",
    "positive_float",
    "positive_int",
    "seed_value",
    "weights",
]

DTYPE_CHOICES = ("float64", "float32", "float16", "bfloat16")
DEVICE_CHOICES = ("cpu", "cuda", "mps")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def seed_value(text: str) -> str:
    """An integer seed in [0, 2**32), ``random`` (draw one) or ``last`` (the previous run's)."""
    if text in ("last", "random") or (text.isdigit() and int(text) < 2**32):
        return text
    raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), 'last' or 'random', got {text!r}")


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def name_list(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated list of names from ``choices``."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        bad = [n for n in names if n not in choices]
        if not names or bad:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(choices)}, got {text!r}")
        return names

    return parse


def weights(text: str) -> dict[str, float]:
    """Per-parameter score weights, ``W1=2,b1=1,W2=2,b2=1``."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            number = float(value) if sep else -1.0
        except ValueError:
            number = -1.0
        if not name or not number >= 0:
            raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT pairs such as W1=2,b1=1, got {text!r}")
        out[name.strip()] = number
    return out
