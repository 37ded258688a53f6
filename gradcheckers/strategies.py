"""Hypothesis strategies for gradient checks: problem sizes, dtypes, devices, seeds and whole cases.

In the manner of ``hypothesis.extra.numpy``: bounds are keyword-only ``min_*``/``max_*`` pairs with
documented defaults, arguments that describe a value accept the value or a strategy for it, and bad
arguments are refused eagerly with an :class:`~gradcheckers.errors.InvalidArgument` naming ``name=value``.

A case's tensors are drawn from a seeded ``torch.Generator``, not element by element through Hypothesis:
the seven fields of a :class:`~gradcheckers.assignment.Case` reproduce it exactly, examples stay cheap, and
shrinking works on what matters for a diagnosis: the sizes shrink to their minimum, the dtype to float64,
the device to cpu and the seed to 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch
from hypothesis import strategies as st
from torch import Tensor

from gradcheckers.assignment import DATA_REGIMES, SIZE_NAMES, Assignment, Case, Sizes, get_assignment
from gradcheckers.errors import InvalidArgument

__all__ = [
    "DEFAULT_SIZE_BOUNDS",
    "STRESS_SCALES",
    "available_devices",
    "case_tensors",
    "cases",
    "devices",
    "dtypes",
    "regimes",
    "scales",
    "seeds",
    "sizes",
]

T = TypeVar("T")

# Defaults cover the seed (one feature, 20 hidden units, one output) and the shapes where its mistakes show:
# batches above 1 (missing sums), more than one output and feature (transposes, broadcasting), and batches
# above 32 (formulas that drop rows).
DEFAULT_SIZE_BOUNDS: dict[str, tuple[int, int]] = {
    "batch": (1, 64),
    "n_feature": (1, 8),
    "n_hidden": (1, 32),
    "n_output": (1, 4),
}
FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")
# The stress range multiplies every tensor: at 1e3 the pre-activations reach 1e6, far past where
# exp overflows in float32 (88.7) and float64 (709.8).
STRESS_SCALES = (1.0, 10.0, 100.0, 1000.0)


def _strategy(value: T | st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


def _check_bounds(name: str, lo: Any, hi: Any) -> None:
    for label, v in ((f"min_{name}", lo), (f"max_{name}", hi)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise InvalidArgument(f"{label}={v!r} must be a positive integer")
    if lo > hi:
        raise InvalidArgument(f"min_{name}={lo!r} must not exceed max_{name}={hi!r}")


def sizes(
    *,
    min_batch: int = 1,
    max_batch: int = 64,
    min_n_feature: int = 1,
    max_n_feature: int = 8,
    min_n_hidden: int = 1,
    max_n_hidden: int = 32,
    min_n_output: int = 1,
    max_n_output: int = 4,
) -> st.SearchStrategy[Sizes]:
    """Problem sizes; each dimension shrinks towards its minimum (defaults: :data:`DEFAULT_SIZE_BOUNDS`)."""
    bounds = {
        "batch": (min_batch, max_batch),
        "n_feature": (min_n_feature, max_n_feature),
        "n_hidden": (min_n_hidden, max_n_hidden),
        "n_output": (min_n_output, max_n_output),
    }
    for name, (lo, hi) in bounds.items():
        _check_bounds(name, lo, hi)
    return st.builds(Sizes, **{name: st.integers(lo, hi) for name, (lo, hi) in bounds.items()})


def dtypes(include: Sequence[str] = ("float64", "float32")) -> st.SearchStrategy[str]:
    """Floating dtypes by name; shrinks towards the first (float64 by default: the clearest counterexample)."""
    include = (include,) if isinstance(include, str) else tuple(include)
    if not include:
        raise InvalidArgument("dtypes(include=()) needs at least one dtype")
    for name in include:
        if name not in FLOAT_DTYPES:
            raise InvalidArgument(f"dtype={name!r} is not one of {FLOAT_DTYPES}")
    return st.sampled_from(include)


def available_devices() -> tuple[str, ...]:
    """``cpu``, plus ``cuda`` and ``mps`` where this machine has them."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return tuple(found)


def devices(include: Sequence[str] | None = None) -> st.SearchStrategy[str]:
    """Devices by name; None means every available one. Shrinks towards ``cpu``."""
    available = available_devices()
    include = available if include is None else (include,) if isinstance(include, str) else tuple(include)
    if not include:
        raise InvalidArgument("devices(include=()) needs at least one device")
    for name in include:
        if name not in available:
            raise InvalidArgument(f"device={name!r} is not available here (available: {', '.join(available)})")
    return st.sampled_from(include)


def seeds(*, min_value: int = 0, max_value: int = 2**32 - 1) -> st.SearchStrategy[int]:
    """Seeds of the generator the case's tensors are drawn from; shrinks towards ``min_value``."""
    # torch.Generator.manual_seed takes seeds below 2^64.
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (min_value, max_value)) or not (
        0 <= min_value <= max_value < 2**64
    ):
        raise InvalidArgument(
            f"min_value={min_value!r}, max_value={max_value!r} must be integers, 0 <= min <= max < 2**64"
        )
    return st.integers(min_value, max_value)


def scales(*, stress: bool = False) -> st.SearchStrategy[float]:
    """1.0 (realistic values), or with ``stress=True`` a scale from :data:`STRESS_SCALES`."""
    return st.sampled_from(STRESS_SCALES) if stress else st.just(1.0)


def regimes(include: Sequence[str] = DATA_REGIMES) -> st.SearchStrategy[str]:
    """Value regimes of a case's data (:data:`~gradcheckers.assignment.DATA_REGIMES`); shrinks towards the
    first, ``normal``, so a counterexample names a regime only when the failure needs it."""
    include = (include,) if isinstance(include, str) else tuple(include)
    bad = [name for name in include if name not in DATA_REGIMES]
    if not include or bad:
        raise InvalidArgument(f"regimes(include={include!r}): expected names from {DATA_REGIMES}")
    return st.sampled_from(include)


def cases(
    assignment: str | Assignment | None = None,
    *,
    sizes: Sizes | st.SearchStrategy[Sizes] | None = None,
    dtype: str | st.SearchStrategy[str] | None = None,
    device: str | st.SearchStrategy[str] | None = None,
    seed: int | st.SearchStrategy[int] | None = None,
    stress: bool = False,
    regime: str | st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[Case]:
    """Whole problem instances for an assignment (default: the seed's two-layer sigmoid network).

    Each argument takes a value or a strategy; None means the default strategy (:func:`sizes`,
    :func:`dtypes`, :func:`devices`, :func:`seeds`, :func:`regimes`). Sizes an assignment does not use are
    held at its fixed value so that they neither vary nor clutter a counterexample.
    """
    spec = get_assignment(assignment)
    if isinstance(sizes, Sizes):
        for name in SIZE_NAMES:
            _check_bounds(name, getattr(sizes, name), getattr(sizes, name))
    size_strategy = _strategy(sizes) if sizes is not None else globals()["sizes"]()
    if spec.fixed_sizes or spec.min_sizes:
        fixed, least = dict(spec.fixed_sizes), dict(spec.min_sizes)
        size_strategy = size_strategy.map(
            lambda s: Sizes(**{n: fixed.get(n, max(least.get(n, 1), getattr(s, n))) for n in SIZE_NAMES})
        )
    if isinstance(dtype, str):
        dtypes([dtype])
    if isinstance(device, str):
        devices([device])
    if isinstance(regime, str):
        regimes([regime])
    return st.builds(
        Case,
        dtype=_strategy(dtype) if dtype is not None else dtypes(),
        device=_strategy(device) if device is not None else devices(),
        sizes=size_strategy,
        seed=_strategy(seed) if seed is not None else seeds(),
        scale=scales(stress=stress),
        regime=_strategy(regime) if regime is not None else regimes(),
    )


def case_tensors(
    assignment: str | Assignment | None = None, **kwargs: Any
) -> st.SearchStrategy[dict[str, Tensor]]:
    """The tensors of :func:`cases` (``X, Y, W1, b1, W2, b2`` for the seed), ready to pass to formulas."""
    spec = get_assignment(assignment)
    return cases(spec, **kwargs).map(spec.tensors)
