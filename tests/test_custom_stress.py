"""Issue 9, item 5: a custom assignment whose correct gradients fall to 1e-114..1e-182 under --stress (a two-layer
sigmoid network written one sample per column, as published course notebooks write it: saturated sigmoids) must
pass, and a mistake in it must still fail."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from gradcheckers import assert_gradients_agree, check_formulas
from gradcheckers.assignment import Sizes

HERE = Path(__file__).parent
ASSIGNMENT = str(HERE / "assignments" / "column_sigmoid.py")
sys.path.insert(0, str(HERE / "assignments"))
sys.path.insert(0, str(HERE / "submissions"))

import column_sigmoid  # noqa: E402
import column_sigmoid_correct  # noqa: E402


def _stressed_cases(count: int) -> list[tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]]:
    """Drawn cases at the --stress scales 10, 100 and 1000 whose correct gradient has an element below 1e-100."""
    cases = []
    seed = 0
    while len(cases) < count:
        g = torch.Generator().manual_seed(seed)
        sizes = Sizes(*(int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((2, 9), (1, 5), (1, 6), (1, 3))))
        drawn = column_sigmoid.draw(sizes, g, (10.0, 100.0, 1000.0)[seed % 3])
        X, Y = drawn.pop("X"), drawn.pop("Y")
        grads = column_sigmoid.gradients(X, Y, **drawn)
        nonzero = torch.cat([v[v != 0].abs() for v in grads.values()])
        if nonzero.numel() and float(nonzero.min()) < 1e-100:
            cases.append((drawn, X, Y))
        seed += 1
    return cases


def test_correct_gradients_of_1e_minus_100_and_below_pass_by_a_wide_margin() -> None:
    for params, X, Y in _stressed_cases(12):
        def loss(X: torch.Tensor = X, Y: torch.Tensor = Y, **p: torch.Tensor) -> torch.Tensor:
            return column_sigmoid.loss(X, Y, **p)

        result = assert_gradients_agree(loss, params, column_sigmoid_correct.gradients(X, Y, **params))
        assert all(p.ratio < 0.1 for p in result.parameters.values()), result


def test_the_correct_submission_passes_the_stress_check_and_a_missing_batch_sum_fails() -> None:
    def missing_sum(X: torch.Tensor, Y: torch.Tensor, W1: torch.Tensor, b1: torch.Tensor, W2: torch.Tensor,
                    b2: torch.Tensor) -> dict[str, torch.Tensor]:
        grads = column_sigmoid_correct.gradients(X, Y, W1, b1, W2, b2)
        A1 = torch.sigmoid(W1 @ X + b1)
        dZ2 = 2 * (torch.sigmoid(W2 @ A1 + b2) - Y) * torch.sigmoid(W2 @ A1 + b2) * (1 - torch.sigmoid(W2 @ A1 + b2))
        return {**grads, "b2": dZ2[:, :1]}  # the first sample's term only

    options = {"assignment": ASSIGNMENT, "stress": True, "max_examples": 60, "seed": 9}
    assert check_formulas(column_sigmoid_correct.gradients, **options).passed
    wrong = check_formulas(missing_sum, **options)
    assert not wrong.parameters["b2"].passed and wrong.parameters["W1"].passed
