"""A two-layer sigmoid network in the column-vector convention of the published deep-learning course notebooks
(one sample per *column*: X of shape (n_x, m), W1 (n_h, n_x), b1 (n_h, 1), W2 (n_y, n_h), b2 (n_y, 1)), with the
summed squared error. Issue 9, item 5: under --stress its correct gradients fall to 1e-114..1e-182 (saturated
sigmoids) and were reported wrong."""

from __future__ import annotations

import torch
from torch import Tensor

from gradcheckers.assignment import Assignment, Sizes


def loss(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    A1 = torch.sigmoid(W1 @ X + b1)
    A2 = torch.sigmoid(W2 @ A1 + b2)
    return ((A2 - Y) ** 2).sum()


def gradients(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> dict[str, Tensor]:
    A1 = torch.sigmoid(W1 @ X + b1)
    A2 = torch.sigmoid(W2 @ A1 + b2)
    dZ2 = 2 * (A2 - Y) * A2 * (1 - A2)
    dZ1 = (W2.T @ dZ2) * A1 * (1 - A1)
    return {"W1": dZ1 @ X.T, "b1": dZ1.sum(axis=1, keepdim=True), "W2": dZ2 @ A1.T,
            "b2": dZ2.sum(axis=1, keepdim=True)}


def shapes(sizes: Sizes) -> dict[str, tuple[int, ...]]:
    m, n_x, n_h, n_y = sizes.batch, sizes.n_feature, sizes.n_hidden, sizes.n_output
    return {"X": (n_x, m), "Y": (n_y, m), "W1": (n_h, n_x), "b1": (n_h, 1), "W2": (n_y, n_h), "b2": (n_y, 1)}


def draw(sizes: Sizes, generator: torch.Generator, scale: float = 1.0) -> dict[str, Tensor]:
    out = {name: torch.randn(*shape, generator=generator, dtype=torch.float64) * scale
           for name, shape in shapes(sizes).items()}
    out["Y"] = torch.rand(*shapes(sizes)["Y"], generator=generator, dtype=torch.float64)  # targets in (0, 1)
    return out


ASSIGNMENT = Assignment(
    name="column-sigmoid",
    title="two-layer sigmoid network, one sample per column, summed squared error",
    inputs=("X", "Y"),
    parameters=("W1", "b1", "W2", "b2"),
    shapes=shapes,
    draw=draw,
    loss=loss,
    reference=gradients,
)
