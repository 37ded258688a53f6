"""Logistic regression: one linear unit and the binary cross-entropy, summed over the samples.

Forward pass (rows are samples)::

    z = X @ w + b             X: (batch, n_feature)  w: (n_feature,)  b: (1,)
    f = sum_i softplus(z_i) - y_i z_i  =  sum_i BCE(sigmoid(z_i), y_i)      y: (batch,) in {0., 1.}

``b`` has shape ``(1,)``, as ``nn.Linear(n_feature, 1).bias`` does, not ``()``: a submitted gradient of b must
be a one-element vector (``dz.sum(0, keepdim=True)`` or ``dz.sum().reshape(1)``). The labels are floating
0/1 values (the target of ``binary_cross_entropy_with_logits``), cast to the case's dtype with the data.
``n_hidden`` and ``n_output`` mean nothing here and are held at 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from gradcheckers.models._oracles import finite_differences_with_loss_rounding
from torch import Tensor
from torch.nn import functional

from gradcheckers.assignment import Assignment, Sizes

__all__ = ["LOGISTIC_REGRESSION", "gradients", "loss", "rounding_magnitudes"]

INPUTS = ("X", "y")
PARAMETERS = ("w", "b")


def loss(X: Tensor, y: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """f = sum of the binary cross-entropies of sigmoid(X w + b) against y, computed stably from the logits."""
    return functional.binary_cross_entropy_with_logits(X @ w + b, y, reduction="sum")


def gradients(X: Tensor, y: Tensor, w: Tensor, b: Tensor) -> dict[str, Tensor]:
    """df/dz_i = sigmoid(z_i) - y_i  =>  df/dw = X^T (p - y),  df/db = sum_i (p_i - y_i), kept as shape (1,)."""
    dz = torch.sigmoid(X @ w + b) - y
    return {"w": X.T @ dz, "b": dz.sum(0, keepdim=True)}


def rounding_magnitudes(X: Tensor, y: Tensor, w: Tensor, b: Tensor) -> dict[str, Tensor]:
    """Per gradient entry, how far a correct floating-point computation may be off, in units of u.

    z is a sum of n_feature + 1 terms (error (n_feature + 2) * (|X||w| + |b|)); sigmoid moves by sigma'(z)
    times that, plus its own few ulps (two for exp and one each for the add and the division, so 4 |p|);
    p - y adds one rounding of |p - y|; the sums over the batch add (batch + 1) u sum|terms|.
    """
    n, f = X.shape
    z = X @ w + b
    p = torch.sigmoid(z)
    dz_a = (p - y).abs()
    d_z = (f + 2) * (X.abs() @ w.abs() + b.abs())
    d_dz = p * (1 - p) * d_z + 4 * p + dz_a
    Xa = X.abs()
    return {
        "w": Xa.T @ d_dz + (n + 1) * (Xa.T @ dz_a),
        "b": (d_dz.sum() + (n + 1) * dz_a.sum()).reshape(1),
    }


def loss_magnitude(X: Tensor, y: Tensor, w: Tensor, b: Tensor) -> float:
    """A bound, in units of u, on the rounding error of one float64 evaluation of the loss: each term
    softplus(z) - y z moves by |p - y| <= 1 times the error of z and is a difference of terms of size |z|."""
    n, f = X.shape
    z = X @ w + b
    d_z = (f + 2) * (X.abs() @ w.abs() + b.abs())
    return float((d_z + 2 * z.abs() + 4).sum() + (n + 1) * loss(X, y, w, b).abs())


def draw(sizes: Sizes, generator: torch.Generator, scale: float = 1.0) -> dict[str, Tensor]:
    """Standard-normal data, w ~ N(0, 4/n_feature) (logits around +-2, where the sigmoid is curved), and
    labels drawn from the model itself so that both classes occur. ``scale`` multiplies X, w and b."""
    n, f = sizes.batch, sizes.n_feature
    X = torch.randn(n, f, generator=generator, dtype=torch.float64)
    w = torch.randn(f, generator=generator, dtype=torch.float64) * (2.0 / f**0.5)
    b = torch.randn(1, generator=generator, dtype=torch.float64)
    p = torch.sigmoid(X @ w + b)
    y = (torch.rand(n, generator=generator, dtype=torch.float64) < p).to(torch.float64)
    return {"X": X * scale, "y": y, "w": w * scale, "b": b * scale}


def shapes(sizes: Sizes) -> dict[str, tuple[int, ...]]:
    return {"X": (sizes.batch, sizes.n_feature), "y": (sizes.batch,), "w": (sizes.n_feature,), "b": (1,)}


def _reference(X: Tensor, y: Tensor, w: Tensor, b: Tensor) -> dict[str, Tensor]:
    return gradients(X, y, w, b)


def _rounding(args: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return rounding_magnitudes(**args)


def _fd(args: Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
    return finite_differences_with_loss_rounding(loss, args, PARAMETERS, loss_magnitude(**args))


LOGISTIC_REGRESSION = Assignment(
    name="logistic-regression",
    title="Logistic regression, f = sum of binary cross-entropies (from the logits)",
    inputs=INPUTS,
    parameters=PARAMETERS,
    shapes=shapes,
    draw=draw,
    loss=loss,
    reference=_reference,
    finite_differences=_fd,
    rounding=_rounding,
    # softplus is analytic, but the stable form (binary_cross_entropy_with_logits: max, abs) is not written
    # holomorphically and has no complex kernel.
    holomorphic=False,
    fixed_sizes={"n_hidden": 1, "n_output": 1},
)
