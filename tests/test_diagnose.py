"""Diagnoses (issue 11, item 6): nothing vacuous on one-element cases; a missing 1/N is not a missing sum."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gradcheckers import check_formulas
from gradcheckers.assignment import get_assignment

MSE_MEAN = get_assignment("two-layer-mse-mean")
LOGISTIC = get_assignment("logistic-regression")


def _diagnosis(assignment: str, parameter: str, formula: Callable[..., Tensor]) -> tuple[str | None, str]:
    result = check_formulas({parameter: formula}, assignment=assignment, parameters=[parameter], max_examples=60,
                            dtypes=("float64",)).parameters[parameter]
    assert not result.passed
    assert result.counterexample is not None
    return result.diagnosis, result.counterexample.describe()


def _mse_residual(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    return 2 * (torch.sigmoid(X @ W1 + b1) @ W2 + b2 - Y)


def test_a_missing_one_over_n_is_named_as_such_not_as_a_missing_sum() -> None:
    def grad_b2(*args: Tensor) -> Tensor:
        return _mse_residual(*args).sum(0)  # the loss is a mean over batch * n_output; this gradient sums

    diagnosis, case = _diagnosis("two-layer-mse-mean", "b2", grad_b2)
    assert diagnosis is not None and "is missing" in diagnosis and "not summed" not in diagnosis, (diagnosis, case)
    assert "1/N" in diagnosis or "1/(batch * n_output)" in diagnosis


def test_a_missing_sum_over_the_batch_is_named_as_such() -> None:
    def grad_b2(*args: Tensor) -> Tensor:
        n, o = args[1].shape
        return _mse_residual(*args)[0] / (n * o)  # the first sample's term only

    diagnosis, case = _diagnosis("two-layer-mse-mean", "b2", grad_b2)
    assert diagnosis is not None and "not summed over the batch" in diagnosis, (diagnosis, case)


def test_a_one_element_mismatch_is_not_called_a_constant_factor() -> None:
    def grad_b(*args: Tensor) -> Tensor:
        return LOGISTIC.reference(*args)["b"] + 0.25  # an offset: on one element it looks like a factor

    diagnosis, case = _diagnosis("logistic-regression", "b", grad_b)
    assert diagnosis is None or "constant factor" not in diagnosis, (diagnosis, case)


def test_a_real_factor_on_one_element_is_still_named_when_a_larger_case_confirms_it() -> None:
    def grad_b(*args: Tensor) -> Tensor:
        return -LOGISTIC.reference(*args)["b"]

    diagnosis, _ = _diagnosis("logistic-regression", "b", grad_b)
    assert diagnosis is not None and "the sign is flipped" in diagnosis


def test_a_tiny_uniform_relative_mismatch_says_the_loss_must_be_the_one_the_formula_differentiates() -> None:
    def grad_b(*args: Tensor) -> Tensor:
        # The gradient of a loss with log(p + eps): off by a relative 1e-7, far above float64 rounding.
        return LOGISTIC.reference(*args)["b"] * (1 + 1e-7) + 1e-9

    diagnosis, _ = _diagnosis("logistic-regression", "b", grad_b)
    assert diagnosis is not None and "the loss differentiated must be the loss the formula differentiates" in diagnosis
