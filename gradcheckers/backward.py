"""Layer-level checks: a course's own ``forward`` and ``backward`` functions, checked as they are written.

Courses assign ``out, cache = layer_forward(x, w, b, ...)`` and ``dx, dw, db = layer_backward(dout, cache)``.
:func:`check_backward` takes those two functions as they are (numpy or torch), draws inputs from shapes with
named sizes (or from strategies), hyperparameters from their domains, and a **random** upstream gradient
``dout`` (never all ones: ``out.sum()`` hides a forgotten upstream gradient), and judges each returned
gradient against the gradient of the scalar ``<dout, forward(inputs)>``:

- with a ``reference`` forward in torch: by autograd of the reference and central differences of it (both in
  float64), after checking the student's forward output against the reference's;
- without one, for a torch forward: by autograd and central differences of the given forward in float64;
- without one, for a numpy forward: by central differences of the given forward, run in float64 numpy (no
  torch rewrite needed). The references' own error estimate is then part of the allowed error, and an element
  whose differences change with the step (a kink within reach of it) is inconclusive, never a failure.

The comparison is the project's one verdict (:func:`gradcheckers.compare.judge_with_limits` with the tolerance
of :mod:`gradcheckers.tolerance`). Stateful layers are checked by drawing their state as an input: a dropout
mask (:func:`mask`), labels (:func:`labels`), running statistics.
"""

from __future__ import annotations

import functools
import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import numpy as np
import torch
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from torch import Tensor

from gradcheckers import strategies
from gradcheckers.assignment import Case, Hyperparameter, Sizes
from gradcheckers.compare import Limits, ReferenceNames, Verdict, estimated_limits, judge_with_limits
from gradcheckers.errors import GradientMismatchError, InvalidArgument
from gradcheckers.forward_verdict import (
    UNIFORM_RELATIVE_FLOOR,
    UNIFORM_RELATIVE_LIMIT,
    forward_spread,
    judge_forward,
    reference_forward,
)
from gradcheckers.references import autograd_gradients, finite_difference_gradients
from gradcheckers.rounding import RoundingEstimate, RoundingModel
from gradcheckers.tolerance import REFERENCE_SAFETY, Tolerance, allowed_error, generic_rounding

__all__ = [
    "BackwardResult",
    "Input",
    "assert_backward",
    "check_backward",
    "labels",
    "mask",
    "positive",
]

# A size named in a shape but given no bounds is drawn from 1..4: big enough that every axis can be > 1 (where
# transposes, missing sums and broadcasts show), small enough that a numpy forward's differences stay cheap.
DEFAULT_SIZE = (1, 4)
# Central differences in float64: a relative step of 1e-5 balances truncation (~s^2) and rounding (~u/s).
STEP = 1e-5
# Rounding of one evaluation of <dout, out> in float64, in units of u * sum|dout * out|: a few roundings per
# term of the sum plus the forward's own (a normalization or a softmax amplifies its inputs' rounding a few
# times). 64 is 4x what the loss oracle needs (references._LOSS_ROUNDING = 16) because the forward's
# intermediates are invisible here; over-estimating only widens the band a float64 answer must hit from
# ~1e-10 to ~4e-10 relative, far below any real mistake.
FD_ROUNDING_TERMS = 64.0
# A kink is tested by a second set of differences with the step divided by 8: where the two estimates differ by
# more than their own error estimates (x REFERENCE_SAFETY), the function is not smooth within reach of the
# element, and the element is inconclusive.
KINK_STEP_DIVISOR = 8.0

# What the messages call the references of each path (never autograd where none ran).
NUMPY_REFERENCES = ReferenceNames(reference="central differences of the forward", confirmation=None,
                                  undecided="central differences of the forward at two steps disagree (or are not "
                                  "finite), or a float32 answer differs where the same code in float64 agrees",
                                  gives="give")

Array = Any  # a numpy array or a torch tensor
Forward = Callable[..., Any]
Backward = Callable[..., Any]
Drawer = Callable[[Sizes, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Input:
    """How one input of a layer is drawn: its shape (ints or size names), and its kind.

    ``normal`` (standard normal, differentiable), ``positive`` (0.5 + |normal|, differentiable: variances, scales),
    ``labels`` (integers in ``[0, classes)``, not differentiated), ``mask`` (a dropout mask, not differentiated:
    each element ``1 / keep`` with probability ``keep`` else 0; ``scaled=False`` gives 0/1).
    """

    shape: tuple[int | str, ...]
    kind: str = "normal"
    classes: int | str | None = None
    keep: float | str | None = None
    scaled: bool = True
    differentiable: bool | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("normal", "positive", "labels", "mask"):
            raise InvalidArgument(f"Input(kind={self.kind!r}) must be normal, positive, labels or mask")
        if self.kind == "labels" and self.classes is None:
            raise InvalidArgument("Input(kind='labels') needs classes= (an int or a size name)")
        if self.kind == "mask" and self.keep is None:
            raise InvalidArgument("Input(kind='mask') needs keep= (a probability or a hyperparameter name)")

    @property
    def is_differentiable(self) -> bool:
        return self.kind in ("normal", "positive") if self.differentiable is None else self.differentiable

    def names(self) -> list[str]:
        """The size and hyperparameter names this input uses, in order of appearance."""
        used = [d for d in self.shape if isinstance(d, str)]
        return used + [v for v in (self.classes, self.keep) if isinstance(v, str)]

    def draw(self, sizes: Sizes, rng: np.random.Generator) -> np.ndarray:
        shape = tuple(int(sizes[d]) if isinstance(d, str) else int(d) for d in self.shape)
        if self.kind == "normal":
            return rng.standard_normal(shape)
        if self.kind == "positive":
            return 0.5 + np.abs(rng.standard_normal(shape))
        if self.kind == "labels":
            classes = int(sizes[self.classes]) if isinstance(self.classes, str) else int(self.classes or 1)
            return rng.integers(0, classes, size=shape)
        keep = float(sizes[self.keep]) if isinstance(self.keep, str) else float(self.keep or 1.0)
        kept = rng.random(shape) < keep
        return kept / keep if self.scaled else kept.astype(np.float64)


def labels(shape: tuple[int | str, ...], classes: int | str) -> Input:
    """Integer class labels in ``[0, classes)`` (``classes`` an int or a size name); never differentiated."""
    return Input(tuple(shape), "labels", classes=classes)


def mask(shape: tuple[int | str, ...], keep: float | str, *, scaled: bool = True) -> Input:
    """A dropout mask drawn as an input (the layer's randomness made explicit): ``1/keep`` or 0 per element."""
    return Input(tuple(shape), "mask", keep=keep, scaled=scaled)


def positive(shape: tuple[int | str, ...]) -> Input:
    """Values in [0.5, inf): for inputs that must stay away from 0 (a variance, a scale)."""
    return Input(tuple(shape), "positive")


InputSpec = Input | tuple[int | str, ...] | Drawer


def as_input(name: str, spec: InputSpec) -> Input | Drawer:
    if isinstance(spec, Input):
        return spec
    if isinstance(spec, tuple) and all(isinstance(d, (int, str)) and not isinstance(d, bool) for d in spec):
        return Input(spec)
    if callable(spec):
        return spec
    raise InvalidArgument(f"inputs[{name!r}]={spec!r} must be a shape (ints and size names), an Input, or a "
                          "function (sizes, numpy Generator) -> array")


@dataclass(frozen=True)
class BackwardResult:
    """The outcome of :func:`check_backward`: pass, or the smallest failing case and every verdict failing there."""

    passed: bool
    examples: int
    inconclusive: int = 0
    counterexample: Case | None = None
    failures: tuple[Verdict, ...] = ()
    hint: str | None = None

    @property
    def parameters(self) -> tuple[str, ...]:
        """The failing inputs (or ``forward``), in input order."""
        return tuple(v.parameter for v in self.failures)

    @property
    def message(self) -> str:
        if self.passed:
            return f"passed {self.examples} example(s)" + (
                f" ({self.inconclusive} inconclusive)" if self.inconclusive else "")
        assert self.counterexample is not None
        head = f"smallest failing case: {self.counterexample.describe()}"
        body = "\n\n".join(v.message for v in self.failures)
        return f"{head}\n{body}" + (f"\nLikely cause: {self.hint}" if self.hint else "")


@dataclass
class _Layer:
    """The validated description of one check (what :func:`check_backward` was given)."""

    forward: Forward
    backward: Backward
    inputs: dict[str, Input | Drawer]
    wrt: tuple[str, ...]
    hyper_names: tuple[str, ...]
    reference: Callable[..., Tensor] | None
    framework: str
    tolerance: Tolerance
    names: dict[str, str] = field(default_factory=dict)  # input -> the gradient's display name (dx)


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _describe(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


class ReferenceFailure(RuntimeError):
    """The reference (not the code under test) failed: a bug or quirk of the check's own configuration."""


class _StudentError(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict


def _fail(parameter: str, reason: str, summary: str, case: Case) -> _StudentError:
    return _StudentError(Verdict(parameter, "fail", reason, summary, f"Case: {case.describe()}"))


def _split(result: Any) -> tuple[Any, Any]:
    """(out, cache) from what a forward returned: a pair is (out, cache); anything else is out alone."""
    if isinstance(result, tuple) and len(result) == 2:
        return result[0], result[1]
    return result, None


def _draw(layer: _Layer, case: Case) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(case.seed)
    drawn = {}
    for name, spec in layer.inputs.items():
        try:
            drawn[name] = np.asarray(spec.draw(case.sizes, rng) if isinstance(spec, Input) else spec(case.sizes, rng))
        except (AttributeError, KeyError) as error:  # a size the drawing function uses but `sizes` does not bound
            raise InvalidArgument(f"inputs[{name!r}] could not be drawn at {case.sizes!r}: {error}; give every size "
                                  "it uses in sizes=") from None
    return drawn


def _in_dtype(layer: _Layer, arrays: Mapping[str, np.ndarray], dtype: str) -> list[Any]:
    out: list[Any] = []
    for value in arrays.values():
        cast = value.astype(dtype) if value.dtype.kind == "f" else value.copy()
        out.append(torch.from_numpy(cast) if layer.framework == "torch" else cast)
    return out


def _hyper(layer: _Layer, case: Case) -> dict[str, Any]:
    return {name: case.sizes[name] for name in layer.hyper_names}


def _run_student(layer: _Layer, case: Case, arrays: Mapping[str, np.ndarray], dout64: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The student's forward then backward in the case's dtype: (out, dout, gradients by input name)."""
    args = _in_dtype(layer, arrays, case.dtype)
    copies = [a.copy() if isinstance(a, np.ndarray) else a.clone() for a in args]
    hyper = _hyper(layer, case)
    try:
        out, cache = _split(layer.forward(*args, **hyper))
    except Exception as error:
        raise _fail("forward", "error", f"forward raised {_describe(error)}", case) from None
    changed = [n for n, a, c in zip(arrays, args, copies) if not _equal(a, c)]
    if changed:
        raise _fail("forward", "mutated-input", f"forward modified its input(s) {', '.join(changed)} in place", case)
    out_np = _to_numpy(out)
    if out_np.dtype.kind not in "fiub":
        raise _fail("forward", "error", f"forward returned {type(out).__name__}, not an array of numbers", case)
    if dout64 is None:
        dout64 = np.random.default_rng([case.seed, 1]).standard_normal(out_np.shape)
    dout_np = dout64.astype(case.dtype)
    # The references differentiate <dout, forward> with exactly the upstream gradient the student received: in
    # float32 the rounded dout differs from the float64 draw by u32 |dout| per element, which a bias gradient
    # (a sum of dout) accumulates into a difference that no rounding of the backward itself explains.
    dout64 = dout_np.astype(np.float64)
    dout = torch.from_numpy(dout_np.copy()) if layer.framework == "torch" else dout_np.copy()
    try:
        grads = layer.backward(dout, cache) if cache is not None else layer.backward(dout, *args, **hyper)
    except Exception as error:
        raise _fail(layer.wrt[0], "error", f"backward raised {_describe(error)}", case) from None
    return out_np, dout64, _by_name(layer, grads, case)


def _equal(a: Any, b: Any) -> bool:
    return bool(np.array_equal(a, b)) if isinstance(a, np.ndarray) else bool(torch.equal(a, b))


def _by_name(layer: _Layer, grads: Any, case: Case) -> dict[str, Any]:
    """backward's result by input name: a mapping by name, a sequence in input order, or one array for one input."""
    expected = ", ".join(layer.names[n] for n in layer.wrt)
    if isinstance(grads, Mapping):
        keyed = {n: grads[n] if n in grads else grads.get(layer.names[n]) for n in layer.wrt}
        missing = [n for n, g in keyed.items() if g is None]
        if missing:
            raise _fail(missing[0], "missing", f"backward returned a mapping without {missing[0]!r} "
                        f"(keys: {sorted(map(str, grads))})", case)
        return keyed
    if isinstance(grads, (tuple, list)):
        if len(grads) != len(layer.wrt):
            raise _fail(layer.wrt[0], "error", f"backward returned {len(grads)} gradient(s); expected "
                        f"{len(layer.wrt)} ({expected}), in the order of the forward's inputs", case)
        return dict(zip(layer.wrt, grads))
    if len(layer.wrt) == 1:
        return {layer.wrt[0]: grads}
    raise _fail(layer.wrt[0], "error", f"backward returned {type(grads).__name__}; expected {len(layer.wrt)} "
                f"gradients ({expected}) as a tuple or a mapping", case)


# --------------------------------------------------------------------------------------------------------
# References


def _torch_args(arrays: Mapping[str, np.ndarray]) -> dict[str, Tensor]:
    return {n: torch.from_numpy(a.astype(np.float64) if a.dtype.kind == "f" else a.copy()) for n, a in arrays.items()}


@dataclass(frozen=True)
class _TorchReferences:
    autograd: dict[str, Tensor]
    differences: dict[str, tuple[Tensor, Tensor]]
    # How far a correct dx may be off, per element, as assert_gradients_agree measures it for any loss
    # (gradcheckers.rounding): a normalization's dx is a small difference of large terms.
    model: RoundingModel


def _torch_references(fn: Callable[..., Any], layer: _Layer, case: Case, arrays: Mapping[str, np.ndarray],
                      dout64: np.ndarray) -> _TorchReferences:
    """Autograd and central differences of <dout, fn(inputs)> in float64, for a torch forward ``fn``.

    A failure of the reference itself (a torch quirk such as a non-contiguous gradient) is never the student's:
    it is raised as an error of the check, with the reference named."""
    hyper = _hyper(layer, case)
    names = list(arrays)

    def loss_with(dout: Tensor) -> Callable[..., Tensor]:
        def loss(**kw: Tensor) -> Tensor:
            out, _ = _split(fn(*[kw[n] for n in names], **hyper))
            return (dout * torch.as_tensor(out)).sum()

        return loss

    args = _torch_args(arrays)
    try:
        loss64 = loss_with(torch.from_numpy(dout64))
        ag = {k: v.contiguous() for k, v in autograd_gradients(loss64, args, layer.wrt).items()}
        fd = finite_difference_gradients(loss64, args, layer.wrt, autograd=ag)
        model = RoundingModel(loss64, args, layer.wrt, ag, seed=case.seed)
    except Exception as error:
        raise _reference_failure(fn, case, error) from error
    return _TorchReferences(ag, fd, model)


def _reference_failure(fn: Callable[..., Any], case: Case, error: BaseException) -> ReferenceFailure:
    return ReferenceFailure(f"the reference forward {getattr(fn, '__name__', fn)!s} failed on {case.describe()}: "
                            f"{_describe(error)}")


def _numpy_differences(layer: _Layer, case: Case, arrays: Mapping[str, np.ndarray], dout64: np.ndarray,
                       wrt: Sequence[str], step: float = STEP) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Central differences of <dout, forward(inputs)> in float64 numpy, element by element, with Richardson's error
    estimate from steps s and 2s (as in :func:`gradcheckers.references.finite_difference_gradients`)."""
    hyper = _hyper(layer, case)
    base = {n: (a.astype(np.float64) if a.dtype.kind == "f" else a) for n, a in arrays.items()}

    def value(current: Mapping[str, np.ndarray]) -> tuple[float, float]:
        out = _to_numpy(_split(layer.forward(*[current[n].copy() for n in base], **hyper))[0]).astype(np.float64)
        terms = dout64 * out
        return float(terms.sum()), float(np.abs(terms).sum())

    center, magnitude = value(base)
    u = np.finfo(np.float64).eps / 2
    rounding = FD_ROUNDING_TERMS * u * (magnitude + abs(center))
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in wrt:
        theta = base[name]
        flat = theta.reshape(-1)
        grad, err = np.empty(flat.size), np.empty(flat.size)
        for i in range(flat.size):
            s = step * max(1.0, abs(float(flat[i])))
            f = []
            for m in (1.0, -1.0, 2.0, -2.0):
                moved = flat.copy()
                moved[i] += m * s
                f.append(value({**base, name: moved.reshape(theta.shape)})[0])
            d1, d2 = (f[0] - f[1]) / (2 * s), (f[2] - f[3]) / (4 * s)
            grad[i] = (4 * d1 - d2) / 3
            err[i] = abs(d1 - d2) / 3 + rounding / s
        found[name] = (grad.reshape(theta.shape), err.reshape(theta.shape))
    return found


# --------------------------------------------------------------------------------------------------------
# One case


def _forward_verdict(layer: _Layer, case: Case, arrays: Mapping[str, np.ndarray], out: np.ndarray,
                     dtype: torch.dtype) -> Verdict:
    """The student's forward output against the reference forward's (see :mod:`gradcheckers.forward_verdict`)."""
    assert layer.reference is not None
    args, hyper, reference = list(_torch_args(arrays).values()), _hyper(layer, case), layer.reference
    try:
        ref = reference_forward(reference, args, hyper)
    except Exception as error:
        raise _reference_failure(reference, case, error) from error
    return judge_forward(out, ref, dtype, layer.tolerance, lambda: f"Case: {case.describe()}",
                         lambda: forward_spread(reference, args, hyper, dtype, ref))


def _evaluate(layer: _Layer, case: Case) -> tuple[list[Verdict], int]:
    """Every verdict of one case that is not a pass (forward first, then each input), and how many were inconclusive."""
    arrays = _draw(layer, case)
    dtype = getattr(torch, case.dtype)
    try:
        out, dout64, grads = _run_student(layer, case, arrays, None)
    except _StudentError as failure:
        return [failure.verdict], 0
    verdicts: list[Verdict] = []
    if layer.reference is not None:
        verdicts.append(_forward_verdict(layer, case, arrays, out, dtype))
        refs = _torch_references(layer.reference, layer, case, arrays, dout64)
    elif layer.framework == "torch":
        refs = _torch_references(layer.forward, layer, case, arrays, dout64)
    else:
        verdicts += _numpy_verdicts(layer, case, arrays, dout64, grads, dtype)
        return _not_passed(verdicts)
    for name in layer.wrt:
        # As assert_gradients_agree judges: the rounding model's floor first, the model itself where the gradient
        # does not agree under it (gradcheckers.compare.settled_limits).
        ag, (fd, fd_error) = refs.autograd[name], refs.differences[name]
        limits = functools.partial(estimated_limits, name=name, autograd=ag, fd=fd, fd_error=fd_error, dtype=dtype,
                                   tolerance=layer.tolerance)
        floor = limits(refs.model.floor)
        verdicts.append(judge_with_limits(name, _to_numpy(grads[name]), tuple(arrays[name].shape), ag, fd, fd_error,
                                          floor.conclusive, floor.allowed, dtype, f"Case: {case.describe()}",
                                          f"backward's {layer.names[name]}", floor.kinked,
                                          refine=functools.partial(_refined, limits, refs.model)))
    return _not_passed(verdicts)


def _refined(limits: Callable[[RoundingEstimate], Limits], model: RoundingModel) -> Limits:
    return limits(model.full)


def _not_passed(verdicts: list[Verdict]) -> tuple[list[Verdict], int]:
    return [v for v in verdicts if v.status == "fail"], sum(v.status == "inconclusive" for v in verdicts)


def _numpy_verdicts(layer: _Layer, case: Case, arrays: Mapping[str, np.ndarray], dout64: np.ndarray,
                    grads: Mapping[str, Any], dtype: torch.dtype) -> list[Verdict]:
    """Judged against float64 central differences of the student's own numpy forward."""
    fd = _numpy_differences(layer, case, arrays, dout64, layer.wrt)
    verdicts = []
    same64: dict[str, np.ndarray] | None = None
    for name in layer.wrt:
        verdict = _fd_verdict(layer, case, name, grads[name], fd[name], None, dtype)
        if verdict.status == "fail" and verdict.reason == "mismatch":
            # A second opinion at a smaller step: differences that change with the step straddle a kink.
            finer = _numpy_differences(layer, case, arrays, dout64, [name], STEP / KINK_STEP_DIVISOR)[name]
            verdict = _fd_verdict(layer, case, name, grads[name], fd[name], finer, dtype)
            if verdict.status == "fail" and verdict.reason == "mismatch" and dtype != torch.float64:
                # Without autograd there is no model of a float32 gradient's rounding (a normalization's dx is a
                # small difference of large terms, far beyond a rounding relative to |dx|). Where the very same
                # forward and backward in float64 are right, the float32 difference is their rounding, which this
                # path cannot bound: inconclusive, never a failure. A formula wrong in float64 is never excused.
                same64 = same64 if same64 is not None else _float64_answer(layer, case, arrays, dout64)
                right = _right_in_float64(layer, same64.get(name), fd[name])
                verdict = _fd_verdict(layer, case, name, grads[name], fd[name], finer, dtype, right)
        verdicts.append(verdict)
    return verdicts


def _float64_answer(layer: _Layer, case: Case, arrays: Mapping[str, np.ndarray], dout64: np.ndarray
                    ) -> dict[str, np.ndarray]:
    """The student's gradients from the same forward and backward run in float64 on the references' inputs (empty
    when that run fails)."""
    try:
        _, _, grads = _run_student(layer, case.replace(dtype="float64"), arrays, dout64)
    except _StudentError:
        return {}
    return {name: _to_numpy(value) for name, value in grads.items()}


def _right_in_float64(layer: _Layer, value: np.ndarray | None, fd: tuple[np.ndarray, np.ndarray]) -> Tensor | None:
    """Where a float64 answer agrees with the differences as a float64 case is judged (None: nothing to compare)."""
    ref, err = torch.from_numpy(fd[0]), torch.from_numpy(fd[1])
    if value is None or np.shape(value) != tuple(ref.shape) or np.asarray(value).dtype.kind != "f":
        return None
    got = torch.from_numpy(np.asarray(value, dtype=np.float64))
    return torch.isfinite(got) & ((got - ref).abs() <= _fd_allowed(layer, ref, err, torch.float64))


def _fd_allowed(layer: _Layer, ref: Tensor, err: Tensor, dtype: torch.dtype) -> Tensor:
    # The reference is itself an estimate: the analytic gradient may differ from it by its error estimate too.
    return allowed_error(ref, generic_rounding(ref, None, dtype), dtype, layer.tolerance) + REFERENCE_SAFETY * err


def _fd_verdict(layer: _Layer, case: Case, name: str, value: Any, fd: tuple[np.ndarray, np.ndarray],
                finer: tuple[np.ndarray, np.ndarray] | None, dtype: torch.dtype,
                undecidable: Tensor | None = None) -> Verdict:
    ref, err = torch.from_numpy(fd[0]), torch.from_numpy(fd[1])
    conclusive = torch.isfinite(ref)
    if finer is not None:
        ref2, err2 = torch.from_numpy(finer[0]), torch.from_numpy(finer[1])
        conclusive &= (ref - ref2).abs() <= REFERENCE_SAFETY * (err + err2)
    if undecidable is not None:
        conclusive &= ~undecidable
    return judge_with_limits(name, _to_numpy(value), tuple(ref.shape), ref, ref, err, conclusive,
                             _fd_allowed(layer, ref, err, dtype), dtype,
                             lambda: f"Case: {case.describe()}; the reference: central differences of the numpy "
                             "forward in float64 (no torch reference was given)", f"backward's {layer.names[name]}",
                             names=NUMPY_REFERENCES)


# --------------------------------------------------------------------------------------------------------
# The search


class _CaseFailed(AssertionError):
    def __init__(self, verdicts: list[Verdict], case: Case) -> None:
        super().__init__(verdicts[0].message)
        self.verdicts = verdicts
        self.case = case


def _layer(forward: Forward, backward: Backward, inputs: Mapping[str, InputSpec], wrt: Sequence[str] | None,
           hyperparameters: Mapping[str, Any], reference: Callable[..., Tensor] | None, framework: str,
           tolerance: Tolerance) -> _Layer:
    if not callable(forward) or not callable(backward):
        raise InvalidArgument(f"forward={forward!r} and backward={backward!r} must be callables")
    if not isinstance(inputs, Mapping) or not inputs:
        raise InvalidArgument(f"inputs={inputs!r} must be a non-empty mapping of names to shapes or Inputs")
    if framework not in ("numpy", "torch"):
        raise InvalidArgument(f"framework={framework!r} must be 'numpy' or 'torch'")
    specs = {name: as_input(name, spec) for name, spec in inputs.items()}
    if wrt is None:
        wrt = [n for n, s in specs.items() if not isinstance(s, Input) or s.is_differentiable]
    unknown = [n for n in wrt if n not in specs]
    if unknown or not wrt:
        raise InvalidArgument(f"wrt={list(wrt)!r} must name some of the inputs {list(specs)}")
    return _Layer(forward, backward, specs, tuple(wrt), tuple(hyperparameters), reference, framework, tolerance,
                  {n: f"d{n}" for n in specs})


def _size_bounds(layer: _Layer, sizes: Mapping[str, Any] | None) -> dict[str, Any]:
    bounds: dict[str, Any] = dict(sizes or {})
    for spec in layer.inputs.values():
        if isinstance(spec, Input):
            for name in spec.names():
                if name not in bounds and name not in layer.hyper_names:
                    bounds[name] = DEFAULT_SIZE
    return bounds


def check_backward(
    forward: Forward,
    backward: Backward,
    inputs: Mapping[str, InputSpec],
    *,
    sizes: Mapping[str, tuple[int, int] | int] | None = None,
    hyperparameters: Mapping[str, Hyperparameter | st.SearchStrategy[Any] | Any] | None = None,
    where: Callable[[Sizes], bool] | None = None,
    wrt: Sequence[str] | None = None,
    reference: Callable[..., Tensor] | None = None,
    framework: str = "numpy",
    max_examples: int = 100,
    seed: int = 0,
    dtypes: Sequence[str] = ("float64", "float32"),
    rtol: float | None = None,
    atol: float | None = None,
) -> BackwardResult:
    """Check a layer's ``backward`` against the gradient of its ``forward``, over Hypothesis-drawn cases.

    - ``forward(*inputs, **hyperparameters)`` returns ``out`` or ``(out, cache)``; ``backward(dout, cache)``
      (or ``backward(dout, *inputs, **hyperparameters)`` when the forward returns no cache) returns the gradients
      of the differentiated inputs in input order (a tuple, or one array for one input) or a mapping by name
      (``"x"`` or ``"dx"``).
    - ``inputs`` maps each argument name, in order, to a shape of ints and size names (``("N", "D")``), an
      :class:`Input` (:func:`labels`, :func:`mask`, :func:`positive`), or a function ``(sizes, rng) -> array``.
      ``wrt`` (default: every float input that is not labels or a mask) names the differentiated ones.
    - ``sizes`` bounds each size name (``{"N": (1, 5), "C": 3}``; default 1..4); ``hyperparameters`` maps each
      keyword of the forward to a :class:`~gradcheckers.assignment.Hyperparameter`, a Hypothesis strategy, or a
      fixed value; ``where(sizes)`` is the constraint between them (``lambda s: s.pad < s.K``).
    - ``reference``: a forward in torch, ``reference(*tensors, **hyperparameters) -> out``; then the student's
      forward is checked against it and the references are its autograd and differences.
    - ``framework="torch"`` passes torch tensors to the student's functions instead of numpy arrays.

    The upstream gradient ``dout`` is drawn at random for every case. Returns a :class:`BackwardResult`;
    :func:`assert_backward` raises instead.
    """
    tolerance = Tolerance(rtol, atol)
    hyper = dict(hyperparameters or {})
    layer = _layer(forward, backward, inputs, wrt, hyper, reference, framework, tolerance)
    if not isinstance(max_examples, int) or isinstance(max_examples, bool) or max_examples < 1:
        raise InvalidArgument(f"max_examples={max_examples!r} must be a positive integer")
    case_strategy = st.builds(
        Case,
        sizes=strategies.named_sizes(_size_bounds(layer, sizes), hyper, where=where),
        dtype=strategies.dtypes(tuple(dtypes)),
        device=st.just("cpu"),
        seed=strategies.seeds(),
    )
    seen: set[Case] = set()
    inconclusive = [0]

    @hypothesis.settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
                         suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                         phases=(Phase.explicit, Phase.generate, Phase.shrink), verbosity=hypothesis.Verbosity.quiet,
                         print_blob=False)
    @hypothesis.seed(seed)
    @hypothesis.given(case_strategy)
    def run(case: Case) -> None:
        seen.add(case)
        failed, unsure = _evaluate(layer, case)
        inconclusive[0] += unsure
        if failed:
            raise _CaseFailed(failed, case)

    try:
        run()
    except _CaseFailed as failure:
        return BackwardResult(False, len(seen), inconclusive[0], failure.case, tuple(failure.verdicts),
                              _hint(failure.verdicts, failure.case))
    return BackwardResult(True, len(seen), inconclusive[0])


def _hint(verdicts: Sequence[Verdict], case: Case) -> str | None:
    worst = verdicts[0].worst
    if worst is None or verdicts[0].reason != "mismatch" or case.dtype != "float64":
        return None
    if worst.autograd and worst.analytic and math.isfinite(worst.analytic):
        rel = abs(worst.analytic - worst.autograd) / abs(worst.autograd)
        # Above UNIFORM_RELATIVE_FLOOR the difference is no longer rounding; below UNIFORM_RELATIVE_LIMIT it is no
        # mistake in the formula either.
        if UNIFORM_RELATIVE_FLOOR < rel < UNIFORM_RELATIVE_LIMIT:
            return ("the mismatch is tiny and relative: the loss differentiated must be the loss the formula "
                    "differentiates (a safety epsilon such as log(p + 1e-8) in the forward changes it)")
    return None


def assert_backward(forward: Forward, backward: Backward, inputs: Mapping[str, InputSpec], **options: Any) -> None:
    """:func:`check_backward`, raising :class:`~gradcheckers.errors.GradientMismatchError` with the smallest
    failing case when it does not pass."""
    __tracebackhide__ = True
    result = check_backward(forward, backward, inputs, **options)
    if not result.passed:
        raise GradientMismatchError(result.message)
