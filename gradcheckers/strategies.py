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

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import hypothesis
import torch
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from torch import Tensor

from gradcheckers.assignment import DATA_REGIMES, SIZE_NAMES, Assignment, Case, Hyperparameter, Sizes, get_assignment
from gradcheckers.errors import InvalidArgument

__all__ = [
    "DEFAULT_SIZE_BOUNDS",
    "STRESS_SCALES",
    "available_devices",
    "case_tensors",
    "cases",
    "devices",
    "dtypes",
    "example",
    "hyperparameter",
    "named_sizes",
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


SizeBound = tuple[int, int] | int | Callable[[Sizes], int]
HyperValue = Any  # a Hyperparameter domain, a Hypothesis strategy, or one fixed value


def hyperparameter(domain: HyperValue, name: str = "hyperparameter") -> st.SearchStrategy[Any]:
    """The strategy for one hyperparameter: a :class:`~gradcheckers.assignment.Hyperparameter` domain (ints and floats
    shrink to ``low``, choices to the first, booleans to False), a Hypothesis
    strategy as it is, or any other value held fixed."""
    if isinstance(domain, st.SearchStrategy):
        return domain
    if not isinstance(domain, Hyperparameter):
        return st.just(domain)
    if domain.kind == "int":
        return st.integers(int(domain.low or 0), int(domain.high or 0))
    if domain.kind == "float":
        assert domain.low is not None and domain.high is not None
        # low first: a failure that does not depend on the value shrinks to the bound, as a size does.
        return st.just(domain.low) | st.floats(domain.low, domain.high, allow_nan=False, allow_infinity=False)
    if domain.kind == "choice":
        return st.sampled_from(domain.values)
    if domain.kind == "bool":
        return st.booleans()
    raise InvalidArgument(f"{name}={domain!r}: unknown kind {domain.kind!r}")


def named_sizes(
    bounds: Mapping[str, SizeBound],
    hyperparameters: Mapping[str, HyperValue] | None = None,
    *,
    where: Callable[[Sizes], bool] | None = None,
) -> st.SearchStrategy[Sizes]:
    """Sizes by any names, each ``(min, max)``, one fixed int, or a function of the others (``lambda s: s.A * s.B``,
    computed after them), plus hyperparameters (see :func:`hyperparameter`),
    drawn together as one :class:`~gradcheckers.assignment.Sizes`. ``where(sizes)`` states the constraints between
    them (``pad < kernel``, an output size of at least 1); cases that break it are never drawn.

    Sizes shrink towards their minimum and hyperparameters towards their simplest value, so that a
    counterexample names the smallest problem and the plainest settings."""
    parts: dict[str, st.SearchStrategy[Any]] = {}
    derived: dict[str, Callable[[Sizes], Any]] = {}
    for name, bound in bounds.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidArgument(f"size name {name!r} must be an identifier")
        if callable(bound):
            derived[name] = bound
            continue
        lo, hi = (bound, bound) if isinstance(bound, int) and not isinstance(bound, bool) else _pair(name, bound)
        _check_bounds(name, lo, hi)
        parts[name] = st.integers(lo, hi)
    for name, domain in (hyperparameters or {}).items():
        if not isinstance(name, str) or not name.isidentifier() or name in parts:
            raise InvalidArgument(f"hyperparameter name {name!r} must be an identifier and not also a size")
        parts[name] = hyperparameter(domain, name)
    def build(values: dict[str, Any]) -> Sizes:
        sizes = Sizes(**values)
        for name, compute in derived.items():  # in order: a derived size may use the ones before it
            sizes = Sizes(**sizes.as_dict(), **{name: compute(sizes)})
        return sizes

    drawn = st.fixed_dictionaries(parts).map(build)
    return drawn.filter(where) if where is not None else drawn


def _pair(name: str, bound: Any) -> tuple[Any, Any]:
    if not isinstance(bound, (tuple, list)) or len(bound) != 2:
        raise InvalidArgument(f"sizes[{name!r}]={bound!r} must be (min, max) or one int")
    return bound[0], bound[1]


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
    sizes: Sizes | st.SearchStrategy[Sizes] | Mapping[str, SizeBound] | None = None,
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
        for name in SIZE_NAMES if spec.sizes is None else ():
            _check_bounds(name, getattr(sizes, name), getattr(sizes, name))
    if spec.sizes is not None and not isinstance(sizes, (Sizes, st.SearchStrategy)):
        # An assignment with its own named sizes and hyperparameters draws them itself; `sizes` may then be a
        # mapping of bounds that overrides some of its own.
        bounds = {**spec.sizes, **(sizes or {})}
        size_strategy = named_sizes(bounds, spec.hyperparameters, where=spec.constraint)
    elif isinstance(sizes, (Sizes, st.SearchStrategy)):
        size_strategy = _strategy(sizes)
    elif sizes is None:
        size_strategy = globals()["sizes"]()
    else:
        raise InvalidArgument(f"sizes={sizes!r}: bounds by name are for assignments with named sizes; give Sizes or "
                              "a strategy")
    if spec.sizes is None and (spec.fixed_sizes or spec.min_sizes):
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


# How many values `example` generates to pick from: Hypothesis's first values are the simplest (every size at its
# minimum), so a pick among 20 reaches the whole range while costing milliseconds for a case strategy.
EXAMPLE_POOL = 20


def example(strategy: st.SearchStrategy[T], seed: int, *, pool: int = EXAMPLE_POOL) -> T:
    """One value of ``strategy``, the same for the same ``seed`` on every run (``strategy.example()`` is neither
    reproducible nor meant for use outside an interactive session): one of the first ``pool`` values Hypothesis
    generates from ``seed``, chosen by ``seed``."""
    found: list[T] = []

    @hypothesis.settings(max_examples=pool, database=None, deadline=None, phases=(Phase.generate,),
                         suppress_health_check=list(HealthCheck), verbosity=hypothesis.Verbosity.quiet)
    @hypothesis.seed(seed)
    @hypothesis.given(strategy)
    def collect(value: T) -> None:
        found.append(value)

    collect()
    return found[seed % len(found)]
