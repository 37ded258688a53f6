"""Kinks: the gradient elements that a piecewise function (relu, abs, max) makes undecidable in one case.

At a kink the derivative jumps, and two things go wrong near one:

- **Rounding flips the side.** A student computing the pre-activation H = X W1 + b1 in float32 gets it off by
  up to about (n_feature + 2) u_32 (|X||W1| + |b1|). Where |H| is smaller than that, the student's relu'(H)
  may be 1 where the float64 reference's is 0: the same correct formula, a different (valid) side of the
  kink, and a gradient that differs by a whole term. At H exactly 0, relu'(0) is a convention (autograd says
  0, ``H >= 0`` says 1); either is a correct subgradient.
- **Finite differences straddle it.** A central difference along an element whose perturbation moves a
  pre-activation across 0 averages the two one-sided slopes; it agrees with neither side.

Neither is the student's fault, so such elements are *inconclusive*: never compared, never blamed. Which
elements: where the assignment names its pre-activations (``Assignment.kinks``), exactly those whose
perturbation moves a pre-activation that lies within the rounding band of the case's dtype, or within the
finite differences' reach (2 s |dK/dtheta|), of 0. Elsewhere the gradient is exact on both sides, and a
wrong formula is still caught by every other element of the case and by every other case.

An assignment with ``smooth=False`` and no ``kinks`` hook gets the signal the finite differences themselves
give: one-sided differences that disagree. For a smooth loss the second differences at s and 2s scale as
s^2 (``c(2s) = 4 c(s)``) and the central differences at s and 2s agree to O(s^2); a kink within reach breaks
one or the other by a fraction of the jump in slope (at least half of it, wherever in reach the kink lies).
That test cannot see the rounding band below the step, so a float32 guarantee needs the hook.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from gradcheckers.assignment import Assignment
from gradcheckers.evaluation import PromoteToFloat64, float64_args, losses_along
from gradcheckers.tolerance import ROUNDING_SAFETY, unit_roundoff

__all__ = ["KINK_RELATIVE_THRESHOLD", "kinked_elements", "one_sided_kinks", "pre_activation_kinks"]

# The finite-difference step of the oracles (gradcheckers.references.DEFAULT_STEP), relative to max(1, |theta|):
# the differences reach +-2s.
_STEP = 1e-5
_U64 = 2.0**-53
# One-sided test: a kink is flagged when its signature exceeds this fraction of the tensor's largest
# derivative (a jump smaller than 2e-6 of it changes a gradient by less than any tolerance allows) ...
KINK_RELATIVE_THRESHOLD = 1e-6
# ... or this many ulps of the loss per step (the rounding noise of the second differences: four loss values,
# each off by a few ulps, combined with weights up to 4).
_NOISE_ULPS = 64.0
# Numbers in one batch of perturbed parameters (as in gradcheckers.references).
_MAX_BATCH_ELEMENTS = 1 << 22


def kinked_elements(assignment: Assignment, args: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
    """Per parameter, a bool mask (CPU) of the gradient elements a kink makes undecidable in this case.

    ``args`` are the case's tensors in its own dtype (the dtype sets the rounding band). None when the
    assignment is smooth or no element is near a kink.
    """
    if assignment.kinks is not None:
        return pre_activation_kinks(assignment, args)
    if not assignment.smooth:
        return one_sided_kinks(assignment, args)
    return None


def _steps(theta: Tensor) -> Tensor:
    return _STEP * theta.abs().clamp(min=1)


def pre_activation_kinks(assignment: Assignment, args: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
    """The elements whose perturbation moves a pre-activation that is within reach of its kink at 0.

    The pre-activations K = ``assignment.kinks(args)`` are evaluated three more times: from the absolute
    values of the floating arguments (K(|args|) is then sum |terms|, e.g. |X||W1| + |b1|, and its Jacobian
    |dK/dtheta| has no cancellation), from ones (the number of terms, n_feature + 1 for an affine layer), and
    from |args| with the parameters moved by their largest finite-difference step (the reach along all
    elements at once, which screens the candidates). Then, with one backward pass of K(|args|)::

        band_j       = ROUNDING_SAFETY * u_dtype * (terms_j + 1) * K_j(|args|)
        kinked[k]    = sum over |K_j| <= band_j of dK_j/dtheta_k > 0                     (rounding may flip it)
                    or 2 s_k * sum over the other candidates of (dK_j/dtheta_k) / (|K_j| - band_j) >= 1

    The second line holds whenever one pre-activation is within the step's reach 2 s_k dK_j/dtheta_k of the
    band (and, conservatively, when several nearly are).
    """
    kinks = assignment.kinks
    assert kinks is not None
    names = assignment.parameters
    u = unit_roundoff(args[names[0]].dtype)
    a64 = float64_args(args)
    absolute = {k: v.abs() if v.is_floating_point() else v for k, v in a64.items()}
    ones = {k: torch.ones_like(v) if v.is_floating_point() else v for k, v in a64.items()}
    steps = {name: _steps(a64[name]) for name in names}
    with torch.no_grad():
        distance = kinks(a64).double().abs()
        magnitude = kinks(absolute).double()
        terms = kinks(ones).double().abs()
        moved = kinks({**absolute, **{n: absolute[n] + 2 * steps[n] for n in names}}).double()
    band = ROUNDING_SAFETY * u * (terms + 1) * magnitude
    within_band = distance <= band
    candidates = distance <= band + (moved - magnitude).clamp(min=0)
    if not bool(candidates.any()):
        return None

    leaves = [absolute[n].clone().requires_grad_(True) for n in names]
    gap = (distance - band).clamp(min=torch.finfo(torch.float64).tiny)
    weights = torch.where(candidates & ~within_band, 1.0 / gap, torch.zeros_like(gap))
    with torch.enable_grad():
        K = kinks({**absolute, **dict(zip(names, leaves))}).double()
        grads = torch.autograd.grad((K * within_band).sum(), leaves, allow_unused=True, retain_graph=True)
        reach = torch.autograd.grad((K * weights).sum(), leaves, allow_unused=True)
    masks = {}
    for name, leaf, in_band, near in zip(names, leaves, grads, reach):
        mask = torch.zeros(leaf.shape, dtype=torch.bool, device=leaf.device)
        if in_band is not None:
            mask |= in_band > 0
        if near is not None:
            mask |= 2 * steps[name] * near >= 1
        masks[name] = mask.cpu()
    return masks


def one_sided_kinks(
    assignment: Assignment, args: Mapping[str, Tensor], *, step: float = _STEP
) -> dict[str, Tensor] | None:
    """The elements along which the loss has a kink within the finite differences' reach, from the loss alone.

    With a = f(+s) - f(0), b = f(0) - f(-s) (the one-sided differences, times s) and the same at 2s, a smooth
    loss has c(2s) = 4 c(s) for c = a - b and equal central differences (a + b) / 2s at s and 2s, both up to
    O(s^2) and rounding. A kink at distance d < 2s breaks |c(2s) - 4 c(s)| / s + 4 |D(s) - D(2s)| by at least
    min(1, 2 - d/s) / 2 of its jump in slope.
    """
    a64 = float64_args(args)
    with torch.no_grad(), PromoteToFloat64():
        f0 = assignment.loss(**a64).double().reshape(())
    masks: dict[str, Tensor] = {}
    found = False
    for name in assignment.parameters:
        theta = a64[name]
        flat = theta.reshape(-1)
        numel = flat.numel()
        s = step * flat.abs().clamp(min=1)
        mult = torch.tensor((1.0, -1.0, 2.0, -2.0), dtype=torch.float64, device=theta.device)
        values = torch.empty(4, numel, dtype=torch.float64, device=theta.device)
        chunk = max(1, _MAX_BATCH_ELEMENTS // (4 * max(numel, 1)))  # bound the memory of the perturbed copies
        for lo in range(0, numel, chunk):
            idx = torch.arange(lo, min(numel, lo + chunk), device=theta.device)
            batch = flat.repeat(4 * idx.numel(), 1)
            rows = torch.arange(4 * idx.numel(), device=theta.device)
            batch[rows, idx.repeat(4)] += (mult[:, None] * s[idx]).reshape(-1)
            with torch.no_grad():
                losses, _ = losses_along(assignment.loss, a64, name, batch.reshape(-1, *theta.shape))
            values[:, lo : lo + idx.numel()] = losses.reshape(4, idx.numel())
        a1, b1 = values[0] - f0, f0 - values[1]
        a2, b2 = values[2] - f0, f0 - values[3]
        d1, d2 = (a1 + b1) / (2 * s), (a2 + b2) / (4 * s)
        signature = ((a2 - b2) - 4 * (a1 - b1)).abs() / s + 4 * (d1 - d2).abs()
        scale = d1.abs().max() if numel else torch.tensor(0.0, dtype=torch.float64)
        threshold = KINK_RELATIVE_THRESHOLD * scale + _NOISE_ULPS * _U64 * (f0.abs() + values.abs().amax(0)) / s
        mask = ~(signature <= threshold)  # NaN counts as a kink: the differences say nothing there
        found = found or bool(mask.any())
        masks[name] = mask.reshape(theta.shape).cpu()
    return masks if found else None
