"""The forward's verdict: a layer's forward output against the reference forward's, in float64.

A mistake in a forward makes every gradient look wrong (or right, for the wrong reason): the gradients are judged
against the gradient of the *reference* forward. So wherever a reference forward exists (``check_backward``'s
``reference``, an assignment's ``forward``), the forward's output gets a verdict of its own, first, through the same
comparison as the gradients (:func:`gradcheckers.compare.judge_with_limits`) with the generic rounding of the judged
dtype (an output, unlike a gradient, has no second reference to estimate its rounding from).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradcheckers.compare import ReferenceNames, Verdict, judge_with_limits
from gradcheckers.tolerance import Tolerance, allowed_error, generic_rounding

__all__ = ["FORWARD", "FORWARD_REFERENCE", "UNIFORM_RELATIVE_FLOOR", "UNIFORM_RELATIVE_LIMIT", "judge_forward"]

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


def judge_forward(out: Any, ref: Tensor, dtype: torch.dtype, tolerance: Tolerance,
                  context: str | Callable[[], str]) -> Verdict:
    """``out`` (the forward's output, an array or tensor in ``dtype``) against ``ref`` (the reference forward's, in
    float64 on the same inputs)."""
    ref = torch.as_tensor(ref).detach().to(torch.float64)
    got_shape = tuple(np.shape(out))
    if got_shape != tuple(ref.shape):
        text = context if isinstance(context, str) else context()
        return Verdict(FORWARD, "fail", "shape", f"the forward returned an output of shape {got_shape}; the reference "
                       f"forward's has shape {tuple(ref.shape)}", text)
    allowed = allowed_error(ref, generic_rounding(ref, None, dtype), dtype, tolerance)
    verdict = judge_with_limits(FORWARD, out, tuple(ref.shape), ref, ref, torch.zeros_like(ref), torch.isfinite(ref),
                                allowed, dtype, context, "forward's output", names=FORWARD_REFERENCE)
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
