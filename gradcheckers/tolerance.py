"""The one tolerance policy of gradcheckers. Every number here is derived in the comment beside it.

An analytic gradient computed in dtype d is compared with the float64 autograd reference, element by
element: ``|analytic - reference| <= allowed``, where

    allowed = ROUNDING_SAFETY * u_d * rounding  +  OUTPUT_ROUNDING * u_d * |reference|  +  underflow

with underflow = UNDERFLOW_TERMS * tiny_d, plus |reference| itself where |reference| < tiny_d / u_d.

``rounding`` is the assignment's first-order rounding-error analysis of the gradient (how far a *correct*
formula, summing in any order, may be off, in units of the unit roundoff u). Without such an analysis
(a generic loss) ``rounding`` is estimated per element from the loss itself by :mod:`gradcheckers.rounding`
(stochastic arithmetic over float32 and float64 autograd); ``generic_rounding`` (GENERIC_TERMS *
max|reference| plus 8x the observed float32 noise, the former policy: too tight where terms cancel, too
loose elsewhere) is kept for the benchmarks' before/after comparison. The dtype d is the one the gradient
was computed in (``compare.judged_dtype``). Along random directions the allowance is
``projected_allowance``. A user's ``rtol`` and ``atol`` replace the whole policy, and must come
together (as in ``torch.testing.assert_close``).

Before the analytic gradient is judged at all, the two references must agree:
``|autograd - finite_differences| <= REFERENCE_SAFETY * fd_error + ROUNDING_SAFETY * u_64 * rounding``;
where they do not, the element is inconclusive and never counted against the formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gradcheckers.errors import InvalidArgument

__all__ = ["Tolerance", "allowed_error", "projected_allowance", "references_agree", "unit_roundoff"]

# u = 2^-(p) for a p+1-bit significand: half the distance from 1.0 to the next float (round to nearest).
_UNIT_ROUNDOFF = {
    torch.float16: 2.0**-11,
    torch.bfloat16: 2.0**-8,
    torch.float32: 2.0**-24,
    torch.float64: 2.0**-53,
}
# The rounding analysis bounds the error of one correct computation to first order. The analytic result
# and the reference each carry such an error (x2), and second-order terms and the activation's own few-ulp
# error are not in it (x2 again).
ROUNDING_SAFETY = 4.0
# Handing the result back in dtype d rounds it once more, and a formula may scale it once (the -2, say).
OUTPUT_ROUNDING = 4.0
# Below the dtype's smallest normal number tiny_d (float32: 1.2e-38) values lose their relative precision or
# flush to zero (a float32 softmax probability of 1e-48 is 0; so is sigmoid(-110)), which the relative terms
# above cannot cover. A correct result may be off by a few tiny_d; and one that an underflowed intermediate
# feeds, scaled up by at most 1/u_d, is below tiny_d / u_d (float32: 2e-31) and may be off by its own size.
UNDERFLOW_TERMS = 4.0
# Generic losses: no analysis, so allow the error of a float sum of 256 terms of the largest entry's size
# (gamma_n = n u for n = 256), about 1.5e-5 relative to the largest entry in float32 and 3e-14 in float64.
GENERIC_TERMS = 256.0
# Autograd in dtype d is itself a correct computation: allow 8x the error it is observed to make.
OBSERVED_NOISE_FACTOR = 8.0
# Random directions: a direction d is drawn independently of the analytic gradient's error e (fixed before d
# is drawn), so d.e is normal with variance sum_i e_i^2 <= sum_i allowed_i^2 when every element is within its
# own allowance. Six deviations: a correct gradient fails one direction with probability 2e-9. The worst case
# sum_i |d_i| allowed_i (what the projection may be off by for an adversarial d) is sqrt(n) times larger, and
# hid a 1% error in one element of a 16,000-element float32 tensor in every trial.
DIRECTION_SIGMAS = 6.0
# The finite-difference error estimate is Richardson's |D(s) - D(2s)| / 3 plus a rounding term; it is an
# estimate, not a bound, so the references may differ by twice it before a case is called inconclusive.
REFERENCE_SAFETY = 2.0


def unit_roundoff(dtype: torch.dtype | str) -> float:
    """The unit roundoff u of a floating dtype (float32: 2^-24 ~ 6.0e-8, float64: 2^-53 ~ 1.1e-16)."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype not in _UNIT_ROUNDOFF:
        raise InvalidArgument(f"dtype={dtype} is not a real floating dtype gradcheckers can judge")
    return _UNIT_ROUNDOFF[dtype]


@dataclass(frozen=True)
class Tolerance:
    """A user's override of the policy: ``rtol`` and ``atol`` together, or neither."""

    rtol: float | None = None
    atol: float | None = None

    def __post_init__(self) -> None:
        if (self.rtol is None) != (self.atol is None):
            raise InvalidArgument(
                f"rtol={self.rtol!r}, atol={self.atol!r}: give both or neither "
                "(one alone would silently keep the default for the other)"
            )
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if value is not None and not (value >= 0):
                raise InvalidArgument(f"{name}={value!r} must be a non-negative number")

    @property
    def overridden(self) -> bool:
        return self.rtol is not None


def generic_rounding(reference: Tensor, observed_noise: Tensor | None, dtype: torch.dtype) -> Tensor:
    """A rounding magnitude (units of u_d) for a gradient with no rounding analysis."""
    scale = reference.abs().max() if reference.numel() else torch.tensor(0.0, dtype=reference.dtype)
    rounding = torch.full_like(reference, GENERIC_TERMS) * scale
    if observed_noise is not None:
        rounding = rounding + (OBSERVED_NOISE_FACTOR / ROUNDING_SAFETY / unit_roundoff(dtype)) * observed_noise
    return rounding


def allowed_error(reference: Tensor, rounding: Tensor, dtype: torch.dtype, tolerance: Tolerance) -> Tensor:
    """Elementwise largest |analytic - reference| that still counts as agreement."""
    if tolerance.overridden:
        assert tolerance.rtol is not None and tolerance.atol is not None
        return tolerance.atol + tolerance.rtol * reference.abs()
    u = unit_roundoff(dtype)
    tiny = torch.finfo(dtype).tiny
    underflow = UNDERFLOW_TERMS * tiny + torch.where(reference.abs() < tiny / u, reference.abs(), 0.0)
    return ROUNDING_SAFETY * u * rounding + OUTPUT_ROUNDING * u * reference.abs() + underflow


def projected_allowance(directions: Tensor, reference: Tensor, allowed: Tensor) -> Tensor:
    """Allowances of the k projections ``directions @ analytic`` (directions: (k, n)) against ``directions @
    reference``, from the per-element ``allowed`` (see DIRECTION_SIGMAS), plus the rounding of the two float64
    dot products themselves (pairwise summation: (log2 n + 1) u64 sum |d_i g_i| each)."""
    n = max(reference.numel(), 1)
    spread = DIRECTION_SIGMAS * torch.sqrt((directions**2) @ (allowed.reshape(-1) ** 2))
    own = 2 * (math.log2(n) + 1) * unit_roundoff(torch.float64) * (directions.abs() @ reference.abs().reshape(-1))
    return spread + own


def references_agree(autograd: Tensor, fd: Tensor, fd_error: Tensor, rounding: Tensor) -> Tensor:
    """Elementwise: do autograd and finite differences agree within the finite differences' own error?"""
    u = unit_roundoff(torch.float64)
    slack = REFERENCE_SAFETY * fd_error + ROUNDING_SAFETY * u * rounding
    return ((autograd - fd).abs() <= slack) & torch.isfinite(autograd) & torch.isfinite(fd)
