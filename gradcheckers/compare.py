"""The verdict: an analytic gradient against the two references, and the messages that explain it.

Layered as in ``torch.testing``: tolerance policy (:mod:`gradcheckers.tolerance`) -> conversion and shape
checks -> elementwise comparison -> message builders -> the thin public :func:`assert_gradients_agree`.
Internal results are :class:`Verdict` records; they become exceptions only at the public boundary.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from gradcheckers.errors import GradientMismatchError, InvalidArgument, SubmissionFailure
from gradcheckers.references import (
    autograd_gradients,
    directional_derivatives,
    finite_difference_gradients,
)
from gradcheckers.rounding import RoundingEstimate, RoundingModel
from gradcheckers.tolerance import (
    Tolerance,
    allowed_error,
    projected_allowance,
    references_agree,
    unit_roundoff,
)

__all__ = [
    "AgreementResult",
    "InconclusiveWarning",
    "Limits",
    "ParameterAgreement",
    "ReferenceNames",
    "Verdict",
    "WorstElement",
    "as_gradient",
    "assert_gradients_agree",
    "estimated_limits",
    "judge",
    "judged_dtype",
    "settled_limits",
]

# The policy of gradcheckers.tolerance, no user override.
DEFAULT_TOLERANCE = Tolerance()

Status = Literal["pass", "fail", "inconclusive"]


class InconclusiveWarning(UserWarning):
    """Autograd and finite differences disagreed, so nothing could be said about the analytic gradient."""


@dataclass(frozen=True)
class WorstElement:
    """The element that failed by the largest margin, with the value of each source there."""

    index: tuple[int, ...]
    analytic: float
    autograd: float
    finite_differences: float
    fd_error: float
    allowed: float


@dataclass(frozen=True)
class Verdict:
    """The judgement of one parameter's gradient on one case."""

    parameter: str
    status: Status
    reason: str | None = None  # one of errors.FAILURE_REASONS when status == "fail"
    summary: str = ""  # one line
    details: str = ""  # the rest of the message: counts, worst element, shapes, context
    worst: WorstElement | None = None

    @property
    def message(self) -> str:
        return f"{self.summary}\n{self.details}".rstrip() if self.details else self.summary


@dataclass(frozen=True)
class ReferenceNames:
    """How a verdict's message names the value judged and what it was judged against.

    The default is the gradient check's: an analytic gradient against autograd, confirmed by finite differences.
    Where only one reference ran (a numpy forward's central differences; a reference forward's output), a message
    naming autograd would send the reader after a computation that never happened: ``confirmation`` is then None.
    """

    value: str = "analytic"
    reference: str = "autograd"
    confirmation: str | None = "finite differences"
    # Why an element is not conclusive: what disagreed there.
    undecided: str = "autograd and finite differences disagree"
    gives: str = "gives"  # the verb after ``reference`` ("give" for a plural name)

    @property
    def against(self) -> str:
        if self.confirmation is None:
            return self.reference
        return f"{self.reference} and {self.confirmation} (which agree with each other)"

    def worst(self, element: WorstElement) -> str:
        """The worst element's values, one per source that was computed."""
        text = f"{self.value} {_fmt(element.analytic)}, {self.reference} {_fmt(element.autograd)}"
        if self.confirmation is not None:
            return f"{text}, {self.confirmation} {_fmt(element.finite_differences)} (+-{element.fd_error:.1g})"
        return text + (f" (+-{element.fd_error:.1g})" if element.fd_error else "")


GRADIENT_REFERENCES = ReferenceNames()


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()


def _fmt(x: float) -> str:
    """Every digit that tells the value apart (``repr``): near-threshold failures differ in the 7th+ digit."""
    return repr(float(x))


def as_gradient(value: object, parameter: str, function: str | None = None) -> Tensor:
    """A submitted gradient as a CPU tensor; numpy arrays are accepted, anything else is a failure."""
    who = function or f"the gradient of {parameter}"
    if isinstance(value, Tensor):
        tensor = value.detach().cpu()
    elif isinstance(value, np.ndarray):
        if value.dtype.kind not in "fiub":
            raise SubmissionFailure("error", f"{who} returned a numpy array of dtype {value.dtype}, not numbers")
        tensor = torch.from_numpy(np.ascontiguousarray(value).reshape(value.shape))  # keeps a 0-d array 0-d
    else:
        hint = " (did you forget a return statement?)" if value is None else ""
        raise SubmissionFailure(
            "error", f"{who} returned {type(value).__name__}{hint}; expected a torch.Tensor or numpy.ndarray"
        )
    if tensor.is_complex() or not (tensor.is_floating_point() or tensor.dtype in _INTEGER_DTYPES):
        raise SubmissionFailure("error", f"{who} returned a tensor of dtype {tensor.dtype}, expected floats")
    return tensor


_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)


class Limits(NamedTuple):
    """What a verdict needs from the references alone, per element: whether it can be decided at all
    (``conclusive``: the references agree, and it is not near a kink or a branch), how far the analytic value
    may be from autograd (``allowed``), and which elements are undecidable for a kink or a branch (``kinked``,
    None when none is: for the message)."""

    conclusive: Tensor
    allowed: Tensor
    kinked: Tensor | None = None


def estimated_limits(estimate: RoundingEstimate, name: str, autograd: Tensor, fd: Tensor, fd_error: Tensor,
                     dtype: torch.dtype, tolerance: Tolerance) -> Limits:
    """The limits of parameter ``name`` judged in ``dtype`` from a rounding estimate (:mod:`gradcheckers.rounding`):
    undecidable near a kink (any dtype) or where float32 takes another branch (float32 and below)."""
    at = autograd.device
    kinked = estimate.kinked[name].to(at)
    undecidable = kinked | estimate.unstable[name].to(at) if dtype != torch.float64 else kinked
    conclusive = references_agree(autograd, fd, fd_error, estimate.rounding[name].to(at)) & ~undecidable
    allowed = allowed_error(autograd, estimate.for_dtype(dtype)[name].to(at), dtype, tolerance)
    return Limits(conclusive, allowed, undecidable if bool(undecidable.any()) else None)


def _agrees_everywhere(got: Tensor, autograd: Tensor, conclusive: Tensor, allowed: Tensor) -> bool:
    """Every element finite, decidable and within its allowance: the verdict is a pass."""
    return bool((torch.isfinite(got) & conclusive & ((got - autograd).abs() <= allowed)).all())


def settled_limits(got: Tensor, autograd: Tensor, floor: Limits, refine: Callable[[], Limits] | None) -> Limits:
    """``floor`` where ``got`` agrees everywhere under it, else ``refine()``.

    ``floor`` holds the least limits a rounding model can give (:attr:`gradcheckers.rounding.RoundingModel.floor`),
    ``refine`` computes the model's own, which only widen them: an analytic gradient that agrees everywhere under
    the floor agrees under the model too, and the model's draws (ten times the references' cost) are spent only
    on a case that does not (a wrong formula, or a correct one rounded beyond a few ulps of its largest entry).
    A gradient of the wrong shape fails on its shape under any limits."""
    return floor if refine is None or _settled(got, autograd, floor) else refine()


def _settled(got: Tensor, autograd: Tensor, limits: Limits) -> bool:
    """Whether the verdict on ``got`` stands under ``limits`` whatever a refinement would widen them to: a wrong
    shape (it fails on the shape), or agreement everywhere."""
    return got.shape != autograd.shape or _agrees_everywhere(got.to(autograd.dtype), autograd, limits.conclusive,
                                                             limits.allowed)


def judge(
    parameter: str,
    value: object,
    shape: tuple[int, ...],
    autograd: Tensor,
    finite_differences: Tensor,
    fd_error: Tensor,
    rounding: Tensor,
    dtype: torch.dtype,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
    context: str = "",
    function: str | None = None,
    kinked: Tensor | None = None,
) -> Verdict:
    """Judge one analytic gradient against the float64 references of one case.

    Order of the checks: a tensor of numbers, exactly the parameter's shape (no broadcasting), finite, then
    agreement with autograd wherever autograd and finite differences agree with each other and ``kinked``
    (see :mod:`gradcheckers.kinks`) does not mark the element as near a kink.
    """
    conclusive = references_agree(autograd, finite_differences, fd_error, rounding)
    if kinked is not None:
        conclusive = conclusive & ~kinked
    allowed = allowed_error(autograd, rounding, dtype, tolerance)
    return judge_with_limits(parameter, value, shape, autograd, finite_differences, fd_error, conclusive, allowed,
                             dtype, context, function, kinked)


def judge_with_limits(
    parameter: str,
    value: object,
    shape: tuple[int, ...],
    autograd: Tensor,
    finite_differences: Tensor,
    fd_error: Tensor,
    conclusive: Tensor,
    allowed: Tensor,
    dtype: torch.dtype,
    context: str | Callable[[], str] = "",
    function: str | None = None,
    kinked: Tensor | None = None,
    names: ReferenceNames = GRADIENT_REFERENCES,
    refine: Callable[[], Limits] | None = None,
) -> Verdict:
    """:func:`judge` with what depends on the references alone worked out beforehand: ``conclusive`` (the
    references agree and the element is not ``kinked``) and ``allowed`` (``allowed_error``). The property check
    computes them for every parameter of a case at once. ``context`` may be a callable, called only for a
    verdict that is not a pass. ``names`` says what the references are, for the message. With ``refine``, the
    limits given are a rounding model's floor, and ``refine()`` gives the model's own where the gradient does
    not agree everywhere under the floor (:func:`settled_limits`)."""
    got = _shaped_gradient(parameter, value, shape, context, function)
    if isinstance(got, Verdict):
        return got
    if refine is not None:
        conclusive, allowed, kinked = settled_limits(got, autograd, Limits(conclusive, allowed, kinked), refine)
    return _verdict(parameter, got, autograd, finite_differences, fd_error, conclusive, allowed, dtype, context,
                    function, kinked, names)


def _text(context: str | Callable[[], str]) -> str:
    return context if isinstance(context, str) else context()


def _shaped_gradient(
    parameter: str, value: object, shape: tuple[int, ...], context: str | Callable[[], str], function: str | None
) -> Tensor | Verdict:
    """The submitted gradient in float64, or the failing verdict when it is not numbers of exactly ``shape``."""
    try:
        got = as_gradient(value, parameter, function)
    except SubmissionFailure as failure:
        return Verdict(parameter, "fail", failure.reason, failure.message, _text(context))
    if tuple(got.shape) != tuple(shape):
        who = function or f"the gradient of {parameter}"
        return Verdict(
            parameter,
            "fail",
            "shape",
            f"{who} returned shape {tuple(got.shape)}; {parameter} has shape {tuple(shape)}. The gradient "
            "must have exactly the parameter's shape; a comparison that broadcasts one against the other "
            "hides the error." + _shape_hint(tuple(got.shape), tuple(shape)),
            _text(context),
        )
    return got.to(torch.float64)


def _verdict(
    parameter: str,
    got: Tensor,
    autograd: Tensor,
    finite_differences: Tensor,
    fd_error: Tensor,
    conclusive: Tensor,
    allowed: Tensor,
    dtype: torch.dtype,
    context: str | Callable[[], str],
    function: str | None,
    kinked: Tensor | None,
    names: ReferenceNames = GRADIENT_REFERENCES,
) -> Verdict:
    # The common case first, in one reduction: every element finite, decidable and within its tolerance. That
    # implies each check below passes; anything else goes through them in their order.
    if _agrees_everywhere(got, autograd, conclusive, allowed):
        return Verdict(parameter, "pass")
    finite = torch.isfinite(got)
    diff = (got - autograd).abs()
    who = function or f"the gradient of {parameter}"
    # A non-finite value is the formula's fault only where the exact gradient is finite; where autograd gives
    # nan or inf too the element is not conclusive (references_agree) and is left to the checks below.
    blamed = ~finite & torch.isfinite(autograd)
    if bool(blamed.any()):
        bad = blamed.nonzero()
        first = tuple(int(i) for i in bad[0]) if bad.numel() else ()
        return Verdict(
            parameter,
            "fail",
            "non-finite",
            f"{who} returned {bad.shape[0]} non-finite value(s) of {got.numel()} where the exact gradient is "
            f"finite (first {_fmt(got[first].item())} at index {first}, where {names.reference} {names.gives} "
            f"{_fmt(autograd[first].item())}). Look for an overflow (exp of a large number: write sigmoid' as "
            "s * (1 - s)) or a 0/0.",
            _text(context),
        )
    mismatched = (diff > allowed) & conclusive & finite
    if bool(mismatched.any()):
        return _mismatch(parameter, who, got, autograd, finite_differences, fd_error, allowed, mismatched,
                         dtype, _text(context), names)
    if not bool(conclusive.all()):
        n = int((~conclusive).sum())
        near = 0 if kinked is None else int(kinked.sum())
        return Verdict(
            parameter,
            "inconclusive",
            None,
            f"{parameter}: {names.undecided} on {n} of {got.numel()} element(s) "
            "(a kink, overflow or a too-coarse step), so this case says nothing about the formula"
            if not near else
            f"{parameter}: {n} of {got.numel()} element(s) cannot be decided in this case ({near} lie so close to a "
            "kink or a branch that rounding or the finite-difference step crosses it)",
            _text(context),
        )
    return Verdict(parameter, "pass")


def _shape_hint(got: tuple[int, ...], want: tuple[int, ...]) -> str:
    if len(got) == len(want) + 1:
        leading, trailing = got[1:] == want, got[:-1] == want
        if leading and trailing:  # (1, 1) for (1,): either axis may be the batch, so name neither
            return (" It has one axis too many: sum the per-sample terms over the batch axis, which is the last "
                    "axis if the result was transposed (e.g. (Y - Y_pred).t()).")
        if leading:
            return f" The extra leading axis of size {got[0]} looks like the batch: sum over it (dim 0)."
        if trailing:
            return (f" The extra trailing axis of size {got[-1]} looks like the batch, after a transpose: sum "
                    f"over it (dim {len(got) - 1}), or sum over dim 0 before transposing.")
    if len(got) == 2 and got[::-1] == want:
        return " It is the transpose of the expected shape."
    return ""


def _mismatch(
    parameter: str,
    who: str,
    got: Tensor,
    autograd: Tensor,
    fd: Tensor,
    fd_error: Tensor,
    allowed: Tensor,
    mismatched: Tensor,
    dtype: torch.dtype,
    context: str,
    names: ReferenceNames = GRADIENT_REFERENCES,
) -> Verdict:
    shape = tuple(got.shape)
    total = got.numel()
    count = int(mismatched.sum())
    diff = (got - autograd).abs()
    margin = torch.where(mismatched, diff - allowed, torch.full_like(diff, -math.inf))
    worst = int(margin.reshape(-1).argmax())
    abs_i = int(torch.where(mismatched, diff, torch.zeros_like(diff)).reshape(-1).argmax())
    rel = diff / autograd.abs()
    rel_allowed = allowed / autograd.abs()
    rel_i = int(torch.where(mismatched, rel, torch.zeros_like(rel)).reshape(-1).argmax())
    flat = lambda t: t.reshape(-1)
    w = _index(worst, shape)
    element = WorstElement(
        index=w,
        analytic=float(flat(got)[worst]),
        autograd=float(flat(autograd)[worst]),
        finite_differences=float(flat(fd)[worst]),
        fd_error=float(flat(fd_error)[worst]),
        allowed=float(flat(allowed)[worst]),
    )
    lines = [
        f"Mismatched elements: {count} / {total} ({100.0 * count / total:.1f}%)",
        f"Greatest absolute difference: {_fmt(float(flat(diff)[abs_i]))} at index {_index(abs_i, shape)} "
        f"(up to {_fmt(float(flat(allowed)[abs_i]))} allowed)",
        f"Greatest relative difference: {_fmt(float(flat(rel)[rel_i]))} at index {_index(rel_i, shape)} "
        f"(up to {_fmt(float(flat(rel_allowed)[rel_i]))} allowed)",
        f"Worst element {w}: {names.worst(element)}",
        f"Shape {shape}, judged in {dtype} (references in float64)",
    ]
    if context:
        lines.append(context)
    summary = (
        f"{who} disagrees with {names.against} on {count} of {total} element(s)"
    )
    return Verdict(parameter, "fail", "mismatch", summary, "\n".join(lines), element)


# --------------------------------------------------------------------------------------------------------
# The public assertion for any scalar loss.


@dataclass(frozen=True)
class ParameterAgreement:
    """What :func:`assert_gradients_agree` found for one parameter.

    ``checked`` counts the elements (or, beyond ``max_full_elements``, the random directions) that were judged,
    ``inconclusive`` those where nothing could be said (the references disagree, or float32 itself takes a
    different branch there). ``worst`` is the judged element closest to its allowance (past it on a failure),
    with the analytic value, both references and the allowance there; ``ratio`` is its |analytic - autograd|
    over the allowance (at most 1 on a pass)."""

    name: str
    status: Status
    dtype: torch.dtype
    checked: int
    inconclusive: int
    worst: WorstElement | None
    ratio: float
    message: str = ""


@dataclass(frozen=True)
class AgreementResult:
    """The outcome of :func:`assert_gradients_agree`, per parameter (a failure also raises)."""

    parameters: dict[str, ParameterAgreement]

    @property
    def passed(self) -> bool:
        return all(p.status != "fail" for p in self.parameters.values())

    @property
    def inconclusive(self) -> int:
        return sum(p.inconclusive for p in self.parameters.values())


def judged_dtype(parameter: torch.dtype, analytic: torch.dtype) -> tuple[torch.dtype, str]:
    """The dtype a gradient is judged in, and why: the lower precision of the parameter's and the result's
    (a float32 gradient of float64 parameters was computed in float32; float32 parameters whose gradient is
    handed back in float64 were still computed from float32 values). Integer results count as the parameter's."""
    if not analytic.is_floating_point or analytic == parameter:
        return parameter, "the dtype of the parameter and of the analytic gradient"
    if unit_roundoff(analytic) > unit_roundoff(parameter):
        return analytic, f"the analytic gradient's dtype (the parameter is {parameter})"
    return parameter, f"the parameter's dtype (the analytic gradient is {analytic})"


def _closest(got: Tensor, ref: Tensor, fd: Tensor, fd_error: Tensor, allowed: Tensor, conclusive: Tensor,
             shape: tuple[int, ...]) -> tuple[WorstElement | None, float]:
    """The judged element with the largest |got - ref| / allowed."""
    ratio = torch.where(conclusive & torch.isfinite(got), (got - ref).abs() / allowed, -1.0).reshape(-1)
    if not ratio.numel() or float(ratio.max()) < 0:
        return None, 0.0
    i = int(ratio.argmax())
    flat = lambda t: float(t.reshape(-1)[i])
    element = WorstElement(_index(i, shape), flat(got), flat(ref), flat(fd), flat(fd_error), flat(allowed))
    return element, float(ratio[i])


def _validated(params: Mapping[str, Tensor], analytic: Mapping[str, Any]) -> None:
    if not isinstance(params, Mapping) or not params:
        raise InvalidArgument(f"params={params!r} must be a non-empty mapping of names to tensors")
    if not isinstance(analytic, Mapping):
        raise InvalidArgument(f"analytic={type(analytic).__name__} must be a mapping of names to gradients")
    missing = [name for name in params if name not in analytic]
    if missing:
        raise InvalidArgument(f"analytic has no gradient for {missing}; it has {sorted(analytic)}")
    for name, p in params.items():
        if not isinstance(p, Tensor) or not p.is_floating_point():
            raise InvalidArgument(f"params[{name!r}]={type(p).__name__} must be a floating-point tensor")


@dataclass(frozen=True)
class _Oracle:
    """Per parameter, what the verdict needs from the references: the values to compare with (the full gradient,
    or its projections along random directions), finite differences with their error, and the limits, from the
    rounding model's floor until :meth:`refined` (see :func:`settled_limits`)."""

    autograd: Tensor
    fd: Tensor
    fd_error: Tensor
    project: Callable[[Tensor], Tensor] | None  # None: every element is compared

    def limits(self, dtype: torch.dtype, tolerance: Tolerance) -> Limits:
        raise NotImplementedError

    def refined(self) -> _Oracle | None:
        """The same references judged by the rounding model itself (None: these already are)."""
        raise NotImplementedError


@dataclass(frozen=True)
class _Elements(_Oracle):
    """Every element compared."""

    name: str = ""
    model: RoundingModel | None = None
    full: bool = False  # the model's own estimate, not its floor

    def limits(self, dtype: torch.dtype, tolerance: Tolerance) -> Limits:
        assert self.model is not None
        estimate = self.model.full if self.full else self.model.floor
        return estimated_limits(estimate, self.name, self.autograd, self.fd, self.fd_error, dtype, tolerance)

    def refined(self) -> _Oracle | None:
        return None if self.full else dataclasses.replace(self, full=True)


@dataclass(frozen=True)
class _Projections(_Oracle):
    """Along random directions: the (k, n) directions and, per element, the reference and its rounding."""

    directions: Tensor | None = None
    elements: Tensor | None = None
    element_rounding: Tensor | None = None
    element_low: Tensor | None = None
    # The projections along the same directions judged by the model itself, with the elements it finds undecidable
    # left out of them (None: these are those).
    refine: Callable[[], _Projections] | None = None

    def limits(self, dtype: torch.dtype, tolerance: Tolerance) -> Limits:
        assert self.directions is not None and self.elements is not None and self.element_rounding is not None
        assert self.element_low is not None
        rounding = self.element_rounding if dtype == torch.float64 else self.element_low
        conclusive = references_agree(self.autograd, self.fd, self.fd_error,
                                      self.directions.abs() @ self.element_rounding.reshape(-1))
        if tolerance.overridden:
            allowed = allowed_error(self.autograd, self.directions.abs() @ rounding.reshape(-1), dtype, tolerance)
        else:
            allowed = projected_allowance(self.directions, self.elements,
                                          allowed_error(self.elements, rounding, dtype, tolerance))
        return Limits(conclusive, allowed)

    def refined(self) -> _Oracle | None:
        return None if self.refine is None else self.refine()


def _oracles(loss_fn: Callable[..., Tensor], params: Mapping[str, Tensor], names: list[str], *, step: float,
             max_full_elements: int, directions: int, seed: int) -> dict[str, _Oracle]:
    args64 = {k: v.detach().double() for k, v in params.items()}
    ag = autograd_gradients(loss_fn, args64, names)
    model = RoundingModel(loss_fn, args64, names, ag, seed=seed)
    if sum(p.numel() for p in params.values()) <= max_full_elements:
        fd = finite_difference_gradients(loss_fn, args64, names, step=step, autograd=ag)
        return {n: _Elements(ag[n].cpu(), fd[n][0].cpu(), fd[n][1].cpu(), None, n, model) for n in names}
    generator = torch.Generator().manual_seed(seed)
    drawn = {n: random_directions(directions, params[n].shape, generator) for n in names}
    floor = _projections(loss_fn, args64, ag, drawn, model.floor, step=step)

    @functools.cache
    def refined() -> dict[str, _Projections]:
        # Along the same directions with the elements the model finds undecidable (a kink, or float32 taking another
        # branch) left out: one of them in every direction would make every direction undecidable. Where it finds
        # none, the floor's directional derivatives serve again. (A pass under the floor needs none of this: it is
        # agreement along directions through every element, within smaller allowances.)
        estimate = model.full
        undecidable = {n: (estimate.kinked[n] | estimate.unstable[n]).cpu() for n in names}
        if not any(bool(u.any()) for u in undecidable.values()):
            return {n: dataclasses.replace(p, element_rounding=estimate.rounding[n].cpu(),
                                           element_low=estimate.low[n].cpu()) for n, p in floor.items()}
        masked = {n: d * ~undecidable[n] for n, d in drawn.items()}
        return _projections(loss_fn, args64, ag, masked, estimate, step=step)

    return {n: dataclasses.replace(p, refine=functools.partial(_one, refined, n)) for n, p in floor.items()}


# Each element is in DIRECTION_COVER of the k directions, not in all. A projection's allowance grows as the root
# of the sum of the squared allowances of the elements in it (tolerance.DIRECTION_SIGMAS), so a direction through
# r k-ths of a tensor of n elements allows sqrt(k / r) times less than one through all of it, and one wrong element
# is seen by r directions, each with its own random weight. Measured (`python -m benchmarks.directions --trials
# 100`, one float32 element off by 1%): 16 directions through every element caught 17% (W, 16,000 elements) and
# 84% (V, 1,000); 32 directions, each element in 4, 32% and 93%; 64, each element in 4, 41% and 95% (with 2 or 8
# of 64, within the noise of 4 at 40 trials). The cost grows with k: a correct P = 180,001 check 0.30 s at 16,
# 1.19 s at 64. The bound stays sound: a direction is still drawn independently of the analytic gradient's
# error, and zero weights add nothing to it.
DIRECTION_COVER = 4


def random_directions(k: int, shape: torch.Size, generator: torch.Generator) -> Tensor:
    """(k, *shape) float64 directions, normal weights, each element in DIRECTION_COVER of them (every one when
    k <= DIRECTION_COVER), evenly spaced from a random first one."""
    d = torch.randn(k, *shape, generator=generator, dtype=torch.float64)
    if k <= DIRECTION_COVER or not d.numel():
        return d
    flat = d.reshape(k, -1)
    first = torch.randint(k, (1, flat.shape[1]), generator=generator)
    rows = (first + torch.arange(DIRECTION_COVER)[:, None] * (k // DIRECTION_COVER)) % k
    return flat.mul_(torch.zeros_like(flat, dtype=torch.bool).scatter_(0, rows, True)).reshape(k, *shape)


def _one(projections: Callable[[], dict[str, _Projections]], name: str) -> _Projections:
    return projections()[name]


def _projections(loss_fn: Callable[..., Tensor], args64: Mapping[str, Tensor], ag: Mapping[str, Tensor],
                 drawn: Mapping[str, Tensor], estimate: RoundingEstimate, *, step: float) -> dict[str, _Projections]:
    """Per parameter, the reference and the directional derivatives along its own (k, *shape) directions."""
    dd = directional_derivatives(loss_fn, args64, list(drawn), {n: d.to(args64[n].device) for n, d in drawn.items()},
                                 step=step)
    out: dict[str, _Projections] = {}
    for n, directions in drawn.items():
        d = directions.reshape(directions.shape[0], -1)
        project = lambda g, d=d: d @ g.reshape(-1).double().cpu()
        out[n] = _Projections(project(ag[n]), dd[n][0].cpu(), dd[n][1].cpu(), project, d, ag[n].cpu(),
                              estimate.rounding[n].cpu(), estimate.low[n].cpu())
    return out


def _agreement(name: str, value: object, param: Tensor, oracle: _Oracle, tolerance: Tolerance, what: str,
               ) -> ParameterAgreement:
    shape = tuple(param.shape)
    try:
        got = as_gradient(value, name)
    except SubmissionFailure as failure:
        return ParameterAgreement(name, "fail", param.dtype, 0, 0, None, math.inf, failure.message)
    dtype, why = judged_dtype(param.dtype, got.dtype)
    judged, limits = _judged(name, got, shape, oracle, dtype, tolerance)
    refined = oracle.refined() if not _settled(judged, oracle.autograd, limits) else None
    if refined is not None:  # the model's draws: see settled_limits
        oracle = refined
        judged, limits = _judged(name, got, shape, oracle, dtype, tolerance)
    label = name if oracle.project is None or judged is got else f"{name} (along {judged.shape[0]} random directions)"
    judged_shape = tuple(judged.shape) if judged is not got else shape
    context = f"Device: {param.device}; {what}; judged in {dtype}: {why}"
    verdict = judge_with_limits(label, judged, judged_shape, oracle.autograd, oracle.fd, oracle.fd_error,
                                limits.conclusive, limits.allowed, dtype, context,
                                function=None if label == name else f"the gradient of {label}", kinked=limits.kinked)
    if verdict.reason in ("shape", "error"):
        return ParameterAgreement(name, "fail", dtype, 0, 0, None, math.inf, verdict.message)
    worst, ratio = _closest(judged.to(torch.float64), oracle.autograd, oracle.fd, oracle.fd_error, limits.allowed,
                            limits.conclusive, judged_shape)
    checked = int(limits.conclusive.sum())
    return ParameterAgreement(name, verdict.status, dtype, checked, limits.conclusive.numel() - checked,
                              verdict.worst or worst, ratio, verdict.message if verdict.status != "pass" else "")


def _judged(name: str, got: Tensor, shape: tuple[int, ...], oracle: _Oracle, dtype: torch.dtype,
            tolerance: Tolerance) -> tuple[Tensor, Limits]:
    """What is compared with the oracle's references (the gradient, or its projections; ``got`` itself where its
    shape is wrong, which fails on the shape), and the limits."""
    judged = oracle.project(got) if oracle.project is not None and tuple(got.shape) == shape else got
    return judged, oracle.limits(dtype, tolerance)


def assert_gradients_agree(
    loss_fn: Callable[..., Tensor],
    params: Mapping[str, Tensor],
    analytic: Mapping[str, Any],
    *,
    rtol: float | None = None,
    atol: float | None = None,
    step: float = 1e-5,
    max_full_elements: int = 4096,
    directions: int = 64,
    seed: int = 0,
) -> AgreementResult:
    """Assert that hand-derived gradients of ``loss_fn(**params)`` agree with autograd and finite differences.

    ``params`` maps names to tensors (the loss is called with them as keyword arguments); ``analytic`` maps
    the same names to your gradients (tensors or numpy arrays of exactly the parameters' shapes). References
    are computed in float64 from the parameters' own values. Each gradient is judged in the dtype it was
    computed in, the lower precision of its parameter's and its own (a float32 result of float64 parameters is
    judged as float32), against what a correct computation in that dtype may be off by, element by element
    (:mod:`gradcheckers.rounding`); or with ``rtol`` and ``atol`` given together.

    Up to ``max_full_elements`` parameter elements in all, every element is checked against a full
    finite-difference gradient; beyond that, each tensor is checked along ``directions`` random directions
    of its own (seeded by ``seed``; each element in 4 of them), each with its elements' allowances along it.

    Returns an :class:`AgreementResult`: per parameter the elements checked and inconclusive and the element
    closest to its allowance. Raises :class:`~gradcheckers.errors.GradientMismatchError` (an
    ``AssertionError``) naming every parameter that disagrees, and warns :class:`InconclusiveWarning` for
    each parameter with elements nothing could be said about (the references disagree there, or float32
    itself takes another branch), so that a caller who ignores the result still hears of them.
    """
    __tracebackhide__ = True
    tolerance = Tolerance(rtol, atol)
    _validated(params, analytic)
    names = list(params)
    oracles = _oracles(loss_fn, params, names, step=step, max_full_elements=max_full_elements,
                       directions=directions, seed=seed)
    what = "every element checked" if oracles[names[0]].project is None else f"directions drawn with seed={seed}"
    result = AgreementResult({n: _agreement(n, analytic[n], params[n], oracles[n], tolerance, what) for n in names})
    for p in result.parameters.values():
        if p.inconclusive and p.status != "fail":
            unit = "element(s)" if oracles[p.name].project is None else "random direction(s)"
            summary = p.message.split("\n")[0] or (
                f"{p.name}: {p.inconclusive} of {p.checked + p.inconclusive} {unit} could not be decided (the "
                "references disagree there, or float32 itself takes another branch)")
            warnings.warn(summary, InconclusiveWarning, stacklevel=2)
    failures = [p.message for p in result.parameters.values() if p.status == "fail"]
    if failures:
        raise GradientMismatchError("\n\n".join(failures))
    return result
