"""Correct gradient formulas written in ways other than ``models.two_layer``'s: each must pass every check.

They differ in summation order, intermediate precision, array library and calling convention, which is what
the tolerance policy must absorb without a false failure.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from . import Formulas, forward


# --------------------------------------------------------------------------------------------------------
# einsum: every product spelled out with its indices (n: batch, f: feature, j: hidden, o: output).
def _einsum_backward(X, Y, W1, b1, W2, b2) -> tuple[Tensor, Tensor, Tensor]:
    H = torch.einsum("nf,fj->nj", X, W1) + b1
    Hs = torch.sigmoid(H)
    G = -2 * (Y - (torch.einsum("nj,jo->no", Hs, W2) + b2))
    dH = torch.einsum("no,jo->nj", G, W2) * Hs * (1 - Hs)
    return Hs, G, dH


EINSUM: dict[str, object] = {
    "W1": lambda X, Y, W1, b1, W2, b2: torch.einsum("nf,nj->fj", X, _einsum_backward(X, Y, W1, b1, W2, b2)[2]),
    "b1": lambda X, Y, W1, b1, W2, b2: torch.einsum("nj->j", _einsum_backward(X, Y, W1, b1, W2, b2)[2]),
    "W2": lambda X, Y, W1, b1, W2, b2: torch.einsum("nj,no->jo", *_einsum_backward(X, Y, W1, b1, W2, b2)[:2]),
    "b2": lambda X, Y, W1, b1, W2, b2: torch.einsum("no->o", _einsum_backward(X, Y, W1, b1, W2, b2)[1]),
}


# --------------------------------------------------------------------------------------------------------
# A Python loop over the batch, accumulating the per-sample gradients (the seed's formulas, summed).
def loop_gradients(X, Y, W1, b1, W2, b2) -> dict[str, Tensor]:
    grads = {name: torch.zeros_like(p) for name, p in (("W1", W1), ("b1", b1), ("W2", W2), ("b2", b2))}
    for x, y in zip(X, Y):
        h = x @ W1 + b1
        s = torch.sigmoid(h)
        g = -2 * (y - (s @ W2 + b2))  # (n_output,)
        dh = (W2 @ g) * s * (1 - s)  # (n_hidden,)
        grads["W1"] += torch.outer(x, dh)
        grads["b1"] += dh
        grads["W2"] += torch.outer(s, g)
        grads["b2"] += g
    return grads


# --------------------------------------------------------------------------------------------------------
# numpy: tensors converted with .numpy(), everything computed in numpy, np.ndarray returned.
def numpy_gradients(X, Y, W1, b1, W2, b2) -> dict[str, np.ndarray]:
    X, Y, W1, b1, W2, b2 = (t.numpy() for t in (X, Y, W1, b1, W2, b2))
    H = X @ W1 + b1
    with np.errstate(over="ignore"):  # exp(-H) overflows to inf for very negative H; 1 / inf is the right 0
        Hs = 1 / (1 + np.exp(-H))
    G = -2 * (Y - (Hs @ W2 + b2))
    dH = (G @ W2.T) * Hs * (1 - Hs)
    return {"W1": X.T @ dH, "b1": dH.sum(axis=0), "W2": Hs.T @ G, "b2": G.sum(axis=0)}


# --------------------------------------------------------------------------------------------------------
# One gradients(...) function returning the mapping, the other submission convention.
def gradients(X, Y, W1, b1, W2, b2) -> dict[str, Tensor]:
    _, Hs, Y_pred = forward(X, W1, b1, W2, b2)
    G = -2 * (Y - Y_pred)
    dH = (G @ W2.T) * Hs * (1 - Hs)
    return {"W1": X.T @ dH, "b1": dH.sum(0), "W2": Hs.T @ G, "b2": G.sum(0)}


# --------------------------------------------------------------------------------------------------------
# sigma'(H) as sigma(H) * sigma(-H): the same number as sigma(1 - sigma), without the cancellation of 1 - s.
def symmetric_sigma_prime_gradients(X, Y, W1, b1, W2, b2) -> dict[str, Tensor]:
    H, Hs, Y_pred = forward(X, W1, b1, W2, b2)
    G = -2 * (Y - Y_pred)
    dH = (G @ W2.T) * (torch.sigmoid(H) * torch.sigmoid(-H))
    return {"W1": X.T @ dH, "b1": dH.sum(0), "W2": Hs.T @ G, "b2": G.sum(0)}


# --------------------------------------------------------------------------------------------------------
# The nn.Linear convention: weights stored (out, in); the math convention's gradients are the transposes.
def linear_convention_gradients(X, Y, W1, b1, W2, b2) -> dict[str, Tensor]:
    weight1, weight2 = W1.T, W2.T  # linear1.weight (n_hidden, n_feature), linear2.weight (n_output, n_hidden)
    Hs = torch.sigmoid(torch.nn.functional.linear(X, weight1, b1))
    G = -2 * (Y - torch.nn.functional.linear(Hs, weight2, b2))
    dH = (G @ weight2) * Hs * (1 - Hs)
    grad_weight1 = dH.T @ X  # d f / d linear1.weight
    grad_weight2 = G.T @ Hs
    return {"W1": grad_weight1.T, "b1": dH.sum(0), "W2": grad_weight2.T, "b2": G.sum(0)}


# --------------------------------------------------------------------------------------------------------
# Computed in float64 whatever the inputs' dtype, cast back at the end: more accurate than required.
def float64_gradients(X, Y, W1, b1, W2, b2) -> dict[str, Tensor]:
    dtype = X.dtype
    X, Y, W1, b1, W2, b2 = (t.double() for t in (X, Y, W1, b1, W2, b2))
    _, Hs, Y_pred = forward(X, W1, b1, W2, b2)
    G = -2 * (Y - Y_pred)
    dH = (G @ W2.T) * Hs * (1 - Hs)
    return {name: g.to(dtype) for name, g in {"W1": X.T @ dH, "b1": dH.sum(0), "W2": Hs.T @ G, "b2": G.sum(0)}.items()}


def _entry(function, name: str):
    def formula(*args):
        return function(*args)[name]

    formula.__name__ = f"grad_{name}"
    return formula


def _per_parameter(function) -> dict[str, object]:
    """grad_W1, grad_b1, ... each calling ``function`` and taking its entry."""
    return {name: _entry(function, name) for name in ("W1", "b1", "W2", "b2")}


# Name -> what is passed to check_formulas: a mapping of four formulas, or one gradients(...) function.
VARIANTS: Mapping[str, Formulas] = {
    "einsum": EINSUM,
    "loop-over-batch": _per_parameter(loop_gradients),
    "numpy": _per_parameter(numpy_gradients),
    "sigma-times-sigma-of-minus-h": _per_parameter(symmetric_sigma_prime_gradients),
    "single-gradients-function": gradients,
    "nn-linear-convention": _per_parameter(linear_convention_gradients),
    "float64-internally": _per_parameter(float64_gradients),
}
