"""The forward's verdict: a layer's forward output against the reference forward's, in float64.

A mistake in a forward makes every gradient look wrong (or right, for the wrong reason): the gradients are judged
against the gradient of the *reference* forward. So wherever a reference forward exists (``check_backward``'s
``reference``, an assignment's ``forward``), the forward's output gets a verdict of its own, first, through the same
comparison as the gradients (:func:`gradcheckers.compare.judge_with_limits`) with the generic rounding of the judged
dtype, plus what the reference forward itself is off by when run in the judged dtype with its roundings randomised
(:func:`forward_spread`): a loss that is a small difference of large terms rounds far beyond its own size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradcheckers.compare import Limits, ReferenceNames, Verdict, judge_with_limits
from gradcheckers.rounding import MODEL_SAFETY, SAMPLES, RandomRounding
from gradcheckers.tolerance import Tolerance, allowed_error, generic_rounding

__all__ = [
    "FORWARD",
    "FORWARD_REFERENCE",
    "UNIFORM_RELATIVE_FLOOR",
    "UNIFORM_RELATIVE_LIMIT",
    "forward_spread",
    "judge_forward",
    "reference_forward",
]

# The name a forward's verdict goes by, beside the gradients' parameter names.
FORWARD = "forward"
FORWARD_REFERENCE = ReferenceNames(value="forward", reference="the reference forward", confirmation=None,
                                   undecided="the reference forward is not finite")
# A mismatch where every element is off by the same tiny relative amount (below 1e-4, above the rounding the
# tolerance allows) is the signature of computing a slightly different function: a safety epsilon.
UNIFORM_RELATIVE_LIMIT = 1e-4
# Above ~1e3 ulps of float64 (1e-13) a relative difference is no longer rounding; 1e-10 leaves a margin of 1e3.
UNIFORM_RELATIVE_FLOOR = 1e-10
EPSILON_HINT = ("the forward computes a slightly different function from the reference (a safety epsilon such as "
                "log(p + 1e-8)?): the loss differentiated must be the loss the formula differentiates")


def _first(value: Any) -> Tensor:
    return torch.as_tensor(value[0] if isinstance(value, tuple) else value).detach().to(torch.float64)


def reference_forward(forward: Callable[..., Any], args: Sequence[Tensor], kwargs: Mapping[str, Any]) -> Tensor:
    """The reference forward's output in float64 on ``args``."""
    return _first(forward(*[a.double() if a.is_floating_point() else a for a in args], **kwargs))


def forward_spread(forward: Callable[..., Any], args: Sequence[Tensor], kwargs: Mapping[str, Any],
                   dtype: torch.dtype, out: Tensor) -> Tensor:
    """Per element, how far the reference forward run in ``dtype`` is off from its float64 output ``out`` at most
    over SAMPLES runs with every rounding moved by an ulp at random (:class:`gradcheckers.rounding.RandomRounding`,
    the stochastic arithmetic of the gradients' model).

    That spread is what another correct writing may be off by (times MODEL_SAFETY, as for the gradients): the
    word2vec loss logsumexp(s) - s[y] of 4.3e-5, a difference of terms of size ~1, is off by ~1e-8 (3e-4
    relative) in float32 in every correct writing, far beyond a rounding of its own size (3 of 2,000 slow
    cases failed before). A forward that cannot run in ``dtype`` gets no spread (the generic rounding alone).
    """
    spread = torch.zeros_like(out)
    # float64 has nothing above it to measure its own spread against: its spread is float32's scaled by
    # u64 / u32 (to first order the error is u times the same sensitivities, whatever u is).
    run_in = torch.float32 if dtype == torch.float64 else dtype
    low = [a.to(run_in) if a.is_floating_point() else a for a in args]
    generator = torch.Generator().manual_seed(0)
    try:
        for _ in range(SAMPLES):
            with RandomRounding(generator):
                draw = _first(forward(*low, **kwargs))
            if draw.shape == out.shape:
                spread = torch.maximum(spread, (draw - out).abs().nan_to_num(0.0, 0.0, 0.0))
    except Exception:  # an op without this dtype, or one the mode cannot rerun: the generic rounding stands
        spread = torch.zeros_like(out)
    return spread * (torch.finfo(dtype).eps / torch.finfo(run_in).eps)


def judge_forward(out: Any, ref: Tensor, dtype: torch.dtype, tolerance: Tolerance,
                  context: str | Callable[[], str], spread: Callable[[], Tensor] | None = None) -> Verdict:
    """``out`` (the forward's output, an array or tensor in ``dtype``) against ``ref`` (the reference forward's, in
    float64 on the same inputs); ``spread()``: the reference's own spread in ``dtype`` (:func:`forward_spread`), added
    to the allowance (times MODEL_SAFETY) only where the output does not agree without it: its random-rounding runs
    cost more than the rest of the forward's verdict (:func:`gradcheckers.compare.settled_limits`)."""
    ref = torch.as_tensor(ref).detach().to(torch.float64)
    got_shape = tuple(np.shape(out))
    if got_shape != tuple(ref.shape):
        text = context if isinstance(context, str) else context()
        return Verdict(FORWARD, "fail", "shape", f"the forward returned an output of shape {got_shape}; the reference "
                       f"forward's has shape {tuple(ref.shape)}", text)
    allowed = allowed_error(ref, generic_rounding(ref, None, dtype), dtype, tolerance)
    finite = torch.isfinite(ref)
    refine = None
    if spread is not None and not tolerance.overridden:
        refine = lambda: Limits(finite, allowed + MODEL_SAFETY * spread().reshape(ref.shape))
    verdict = judge_with_limits(FORWARD, out, tuple(ref.shape), ref, ref, torch.zeros_like(ref), finite, allowed, dtype,
                                context, "forward's output", names=FORWARD_REFERENCE, refine=refine)
    if verdict.status == "fail" and verdict.reason == "mismatch":
        got = torch.as_tensor(np.asarray(out, dtype=np.float64))
        if uniformly_close(got, ref):
            return Verdict(verdict.parameter, verdict.status, verdict.reason, verdict.summary,
                           f"{verdict.details}\nLikely cause: {EPSILON_HINT}", verdict.worst)
    return verdict


def uniformly_close(got: Tensor, ref: Tensor) -> bool:
    """Every sizeable element off by a relative amount below UNIFORM_RELATIVE_LIMIT (a slightly different function)."""
    big = ref.abs() > 1e-3 * float(ref.abs().max()) if ref.numel() else ref.bool()
    if not bool(big.any()) or got.shape != ref.shape:
        return False
    rel = ((got - ref).abs() / ref.abs())[big]
    return bool((rel < UNIFORM_RELATIVE_LIMIT).all())
