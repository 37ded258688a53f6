"""Gradient formulas for the tests: a catalogue of deliberate mistakes and of correct variants.

Each formula takes the assignment's arguments ``(X, Y, W1, b1, W2, b2)`` in the math convention and returns
the gradient of f = ||Y - Y_pred||_F^2 with respect to one parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

Formula = Callable[..., object]
Formulas = Mapping[str, Formula] | Callable[..., Mapping[str, object]]


def forward(X: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """H, Hs and Y_pred, written out once for the formulas below (the library's own is not reused on purpose)."""
    import torch

    H = X @ W1 + b1
    Hs = torch.sigmoid(H)
    return H, Hs, Hs @ W2 + b2
