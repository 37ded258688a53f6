"""A catalogue of deliberately wrong gradient submissions for the two-layer sigmoid network.

Each :class:`Mistake` replaces the correct formula (``models.two_layer.grad_*``) of one or more parameters by
a wrong one and records what the property check must conclude: which parameters fail, why (a reason of
``gradcheckers.errors.FAILURE_REASONS``) and the smallest counterexample's sizes (batch, n_feature, n_hidden,
n_output). The sizes follow from the mistake; the comment beside each says why they are the smallest.

Notation in the formulas: G = df/dY_pred = -2 (Y - Y_pred), dH = (G W2^T) * sigma'(H).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from gradcheckers.models import seed as seed_formulas
from gradcheckers.models import two_layer
from torch import Tensor

from . import Formula, forward

CORRECT: dict[str, Formula] = {
    "W1": two_layer.grad_W1,
    "b1": two_layer.grad_b1,
    "W2": two_layer.grad_W2,
    "b2": two_layer.grad_b2,
}


@dataclass(frozen=True)
class Mistake:
    """One wrong submission and the verdict it must get."""

    name: str
    description: str
    wrong: dict[str, Formula]  # the parameters whose formula is wrong; the rest are the correct ones
    reason: str
    sizes: tuple[int, int, int, int]  # (batch, n_feature, n_hidden, n_output) of the shrunk counterexample
    stress: bool = False  # the mistake shows only in the stress range of values (``stress=True``)
    seed: int = 0  # the shrunk counterexample's seed and scale: the smallest that still show the mistake
    scale: float = 1.0
    message: str = ""  # a phrase the failure message must contain
    regime: str = "normal"  # the shrunk counterexample's data regime (gradcheckers.assignment.DATA_REGIMES)
    scale_float32: float | None = None  # the scale in float32, where it differs (exp overflows sooner)
    failing: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "failing", tuple(self.wrong))

    @property
    def formulas(self) -> dict[str, Formula]:
        return {**CORRECT, **self.wrong}


def _G(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(H, Hs, G) of the correct backward pass."""
    H, Hs, Y_pred = forward(X, W1, b1, W2, b2)
    return H, Hs, -2 * (Y - Y_pred)


def _dH(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    _, Hs, G = _G(X, Y, W1, b1, W2, b2)
    return (G @ W2.T) * Hs * (1 - Hs)


# --------------------------------------------------------------------------------------------------------
# The mistakes of the issue


def b1_without_batch_sum(X, Y, W1, b1, W2, b2):
    return _dH(X, Y, W1, b1, W2, b2)  # (batch, n_hidden): the per-sample gradients, not summed


def b2_without_batch_sum(X, Y, W1, b1, W2, b2):
    return _G(X, Y, W1, b1, W2, b2)[2]  # (batch, n_output)


def W2_sign_error(X, Y, W1, b1, W2, b2):
    _, Hs, G = _G(X, Y, W1, b1, W2, b2)
    return -(Hs.T @ G)  # 2 Hs^T (Y - Y_pred): the residual taken the other way round


def b2_missing_factor_2(X, Y, W1, b1, W2, b2):
    _, _, Y_pred = forward(X, W1, b1, W2, b2)
    return -(Y - Y_pred).sum(0)  # d/dx of x^2 is 2x, not x


def W1_batch_mean(X, Y, W1, b1, W2, b2):
    return X.T @ _dH(X, Y, W1, b1, W2, b2) / X.shape[0]  # the loss sums over the batch; this averages


def _mse_mean(parameter: str) -> Formula:
    def formula(X, Y, W1, b1, W2, b2):
        return two_layer.gradients(X, Y, W1, b1, W2, b2)[parameter] / Y.numel()  # f / (batch * n_output)

    formula.__name__ = f"{parameter}_mse_mean"
    return formula


def _sigma_prime_as_sigma(parameter: str) -> Formula:
    def formula(X, Y, W1, b1, W2, b2):
        _, Hs, G = _G(X, Y, W1, b1, W2, b2)
        dH = (G @ W2.T) * Hs  # sigma'(H) written as sigma(H)
        return X.T @ dH if parameter == "W1" else dH.sum(0)

    formula.__name__ = f"{parameter}_sigma_prime_as_sigma"
    return formula


def _sigma_prime_from_preactivation(parameter: str) -> Formula:
    def formula(X, Y, W1, b1, W2, b2):
        H, _, G = _G(X, Y, W1, b1, W2, b2)
        dH = (G @ W2.T) * H * (1 - H)  # s(1 - s) with s = H instead of s = sigmoid(H)
        return X.T @ dH if parameter == "W1" else dH.sum(0)

    formula.__name__ = f"{parameter}_sigma_prime_from_preactivation"
    return formula


def W2_transposed(X, Y, W1, b1, W2, b2):
    _, Hs, G = _G(X, Y, W1, b1, W2, b2)
    return (Hs.T @ G).T  # (n_output, n_hidden): nn.Linear's weight layout, not the math convention's


def b1_broadcast_for_one_output(X, Y, W1, b1, W2, b2):
    _, Hs, G = _G(X, Y, W1, b1, W2, b2)
    # G * W2.T is the matrix product G @ W2.T only when n_output == 1 (an outer product by broadcasting).
    return ((G * W2.T) * Hs * (1 - Hs)).sum(0)


def W1_first_feature_only(X, Y, W1, b1, W2, b2):
    dH = _dH(X, Y, W1, b1, W2, b2)
    return (X[:, :1].T @ dH).expand(W1.shape[0], -1)  # every row computed from the first feature


def b2_relative_error(X, Y, W1, b1, W2, b2):
    return two_layer.grad_b2(X, Y, W1, b1, W2, b2) * (1 + 1e-3)


def W2_dropped_rows(X, Y, W1, b1, W2, b2):
    _, Hs, G = _G(X[:32], Y[:32], W1, b1, W2, b2)  # a fixed mini-batch of 32 rows
    return Hs.T @ G


def b1_hard_coded_width(X, Y, W1, b1, W2, b2):
    return torch.zeros(20, dtype=X.dtype) + _dH(X, Y, W1, b1, W2, b2).sum(0)  # the seed had 20 hidden units


# --------------------------------------------------------------------------------------------------------
# Numerical instability and bad return values


def _exp_sigma_prime(parameter: str) -> Formula:
    def formula(X, Y, W1, b1, W2, b2):
        H, _, G = _G(X, Y, W1, b1, W2, b2)
        dH = (G @ W2.T) * (torch.exp(H) / (1 + torch.exp(H)) ** 2)  # inf / inf = nan once exp(H) overflows
        return X.T @ dH if parameter == "W1" else dH.sum(0)

    formula.__name__ = f"{parameter}_exp_sigma_prime"
    return formula


def b2_numpy_without_batch_sum(X, Y, W1, b1, W2, b2):
    return _G(X, Y, W1, b1, W2, b2)[2].numpy()


def W2_python_list(X, Y, W1, b1, W2, b2):
    return two_layer.grad_W2(X, Y, W1, b1, W2, b2).tolist()


def b1_returns_none(X, Y, W1, b1, W2, b2):
    _dH(X, Y, W1, b1, W2, b2).sum(0)  # computed, never returned


def W1_raises(X, Y, W1, b1, W2, b2):
    raise ValueError("not implemented yet")


def b2_mutates_input(X, Y, W1, b1, W2, b2):
    _, _, Y_pred = forward(X, W1, b1, W2, b2)
    Y -= Y_pred  # the residual, in place: the caller's Y is changed
    return -2 * Y.sum(0)


def W2_returns_nan(X, Y, W1, b1, W2, b2):
    return torch.full_like(W2, float("nan"))


# --------------------------------------------------------------------------------------------------------
# The catalogue. Sizes are (batch, n_feature, n_hidden, n_output); every size's minimum is 1.

MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "b1-missing-batch-sum",
        "db1 is the per-sample gradient, not summed over the batch",
        {"b1": b1_without_batch_sum},
        "shape",
        (1, 1, 1, 1),  # (1, n_hidden) against (n_hidden,) already at batch 1
        message="sum the per-sample terms over the batch axis",
    ),
    Mistake(
        "b2-missing-batch-sum",
        "db2 is the per-sample gradient, not summed over the batch",
        {"b2": b2_without_batch_sum},
        "shape",
        (1, 1, 1, 1),
        message="sum the per-sample terms over the batch axis",
    ),
    Mistake(
        "seed-W1-precedence",
        "the seed's dW1: -2 * X.T @ (...) * sigma'(H) multiplies by sigma'(H) after the product with X.T",
        {"W1": seed_formulas.grad_W1},
        "shape",
        # Right at batch 1. At batch 2 with one feature, (1, h) * (2, h) broadcasts to (2, h) against (1, h);
        # with n_feature == batch the shape is right by accident, with other widths the product raises.
        (2, 1, 1, 1),
    ),
    Mistake(
        "sign-error",
        "dW2 has the wrong sign",
        {"W2": W2_sign_error},
        "mismatch",
        (1, 1, 1, 1),
    ),
    Mistake(
        "missing-factor-2",
        "db2 forgets the 2 of d(x^2)/dx",
        {"b2": b2_missing_factor_2},
        "mismatch",
        (1, 1, 1, 1),
    ),
    Mistake(
        "batch-mean",
        "dW1 averages over the batch where the loss sums",
        {"W1": W1_batch_mean},
        "mismatch",
        (2, 1, 1, 1),  # dividing by a batch of 1 is harmless
    ),
    Mistake(
        "mse-mean",
        "every gradient is that of the mean loss, f / (batch * n_output)",
        {name: _mse_mean(name) for name in ("W1", "b1", "W2", "b2")},
        "mismatch",
        # Right when batch * n_output == 1. Hypothesis minimises the choices in the order they are drawn
        # (batch first), so it prefers n_output = 2 to batch = 2.
        (1, 1, 1, 2),
    ),
    Mistake(
        "sigma-prime-as-sigma",
        "sigma'(H) written as sigma(H)",
        {name: _sigma_prime_as_sigma(name) for name in ("W1", "b1")},
        "mismatch",
        (1, 1, 1, 1),
    ),
    Mistake(
        "sigma-prime-from-preactivation",
        "sigma'(H) written as H * (1 - H)",
        {name: _sigma_prime_from_preactivation(name) for name in ("W1", "b1")},
        "mismatch",
        (1, 1, 1, 1),
    ),
    Mistake(
        "transposed-dW2",
        "dW2 returned as (Hs^T G)^T, nn.Linear's layout",
        {"W2": W2_transposed},
        "shape",
        # (n_output, n_hidden) against (n_hidden, n_output): right when both are 1, shape-correct (and wrong
        # in value) when they are equal; the smallest case has them differ, n_output drawn last.
        (1, 1, 1, 2),
        message="transpose",
    ),
    Mistake(
        "broadcast-one-output",
        "db1 uses G * W2.T, which is G @ W2.T only for n_output == 1",
        {"b1": b1_broadcast_for_one_output},
        "shape",
        (1, 1, 1, 2),  # (n_output,) against (n_hidden,) when n_hidden == 1
    ),
    Mistake(
        "first-feature-only",
        "dW1 computes every row from the first input feature",
        {"W1": W1_first_feature_only},
        "mismatch",
        (1, 2, 1, 1),
    ),
    Mistake(
        "relative-error-1e-3",
        "db2 is off by a relative 1e-3, far beyond float32 rounding",
        {"b2": b2_relative_error},
        "mismatch",
        (1, 1, 1, 1),
    ),
    Mistake(
        "dropped-rows",
        "dW2 uses only the first 32 rows of the batch",
        {"W2": W2_dropped_rows},
        "mismatch",
        (33, 1, 1, 1),
    ),
    Mistake(
        "hard-coded-width",
        "db1 accumulates into a vector of 20 hidden units, the seed's width",
        {"b1": b1_hard_coded_width},
        "shape",
        (1, 1, 1, 1),  # (20,) against (1,) by broadcasting; other widths raise
    ),
    Mistake(
        "exp-sigma-prime",
        "sigma'(H) as exp(H) / (1 + exp(H))^2 overflows to inf / inf = nan for large H",
        {name: _exp_sigma_prime(name) for name in ("W1", "b1")},
        "non-finite",
        # Generator seed 0 draws a negative pre-activation at every scale with its data as drawn; with the data
        # made negative (regime "negative") the pre-activation turns positive, and at scale 100 (H ~ 1e4)
        # exp(H) overflows in float32 (beyond 88.7) and in float64 (beyond 709.8) alike.
        (1, 1, 1, 1),
        stress=True,
        seed=0,
        scale=100.0,
        scale_float32=10.0,  # H ~ 1e2 already overflows exp in float32
        regime="negative",
        message="non-finite",
    ),
    Mistake(
        "numpy-wrong-shape",
        "db2 returned as a numpy array, not summed over the batch",
        {"b2": b2_numpy_without_batch_sum},
        "shape",
        (1, 1, 1, 1),
    ),
    Mistake(
        "python-list",
        "dW2 returned as a Python list",
        {"W2": W2_python_list},
        "error",
        (1, 1, 1, 1),
        message="returned list; expected a torch.Tensor or numpy.ndarray",
    ),
    Mistake(
        "returns-none",
        "db1 is computed but not returned",
        {"b1": b1_returns_none},
        "error",
        (1, 1, 1, 1),
        message="did you forget a return statement?",
    ),
    Mistake(
        "raises",
        "dW1 raises an exception",
        {"W1": W1_raises},
        "error",
        (1, 1, 1, 1),
        message="ValueError: not implemented yet",
    ),
    Mistake(
        "mutates-input",
        "db2 subtracts Y_pred from Y in place",
        {"b2": b2_mutates_input},
        "mutated-input",
        (1, 1, 1, 1),
        message="in place",
    ),
    Mistake(
        "returns-nan",
        "dW2 is NaN",
        {"W2": W2_returns_nan},
        "non-finite",
        (1, 1, 1, 1),
    ),
)

BY_NAME = {mistake.name: mistake for mistake in MISTAKES}
