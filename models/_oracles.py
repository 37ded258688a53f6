"""Finite differences for losses whose value is computed with cancellation, shared by the bundled models.

The generic central differences (:func:`gradcheckers.references.finite_difference_gradients`) estimate the
rounding error of each loss value as a few ulps of the loss itself. A cross-entropy computed as
``logsumexp(S) - S[y]`` (or a logistic loss as ``softplus(z) - y z``) is a small difference of large terms when
the model is confident, and then each value is off by u times the *terms*, not the result: the estimate is too
small, the references disagree and cases come out inconclusive for no reason. A model that can bound the
terms passes that bound here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor

from gradcheckers.references import DEFAULT_STEP, finite_difference_gradients

U64 = 2.0**-53
# Each loss value is off by at most u * magnitude; a central difference D(s) = (f(+s) - f(-s)) / 2s by u * M / s,
# D(2s) by half that, and Richardson's (4 D(s) - D(2s)) / 3 by 1.5 u * M / s: 4 leaves a margin of 2.7.
LOSS_ROUNDING_FACTOR = 4.0


def finite_differences_with_loss_rounding(
    loss: Callable[..., Tensor], args: Mapping[str, Tensor], wrt: Sequence[str], magnitude: float
) -> dict[str, tuple[Tensor, Tensor]]:
    """The generic differences, with ``magnitude`` (a bound on the sum of |terms| a loss value is computed
    from) added to each element's error estimate as ``LOSS_ROUNDING_FACTOR * u * magnitude / s``."""
    out = finite_difference_gradients(loss, args, wrt, step=DEFAULT_STEP)
    for name in wrt:
        grad, err = out[name]
        s = DEFAULT_STEP * args[name].detach().double().abs().clamp(min=1).to(err.device)
        out[name] = (grad, err + LOSS_ROUNDING_FACTOR * U64 * magnitude / s)
    return out
