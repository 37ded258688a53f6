"""The seed assignment's own formulas, translated to the math convention: right only for batch size 1.

They are kept, unchanged in substance, as the canonical wrong submission. What is wrong with them:

- ``b2``: ``-2 * (Y - Y_pred).T`` keeps one column per sample (shape (n_output, batch)) instead of summing
  over the batch; at batch 1 it is the right numbers in the wrong shape (n_output, 1).
- ``b1``: ``-2 * ((Y - Y_pred) @ W2.T) * sigma'(H)`` is the per-sample gradient, shape (batch, n_hidden); the
  sum over the batch is missing. At batch 1 it is (1, n_hidden) against b1's (n_hidden,): the homework's
  ``torch.allclose`` broadcast one against the other and called it a match.
- ``W1``: ``-2 * X.T @ ((Y - Y_pred) @ W2.T) * sigma'(H)`` multiplies by sigma'(H) *after* the product with
  X.T (operator precedence), which is the right gradient only when the batch has one row.
- sigma'(h) is written exp(h) / (1 + exp(h))^2, which overflows to inf/inf = nan for h > 88.7 in float32.
- ``W2`` is right for every batch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _sigmoid_prime(H: Tensor) -> Tensor:
    return torch.exp(H) / torch.square(1 + torch.exp(H))


def grad_W1(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    H = X @ W1 + b1
    Y_pred = torch.sigmoid(H) @ W2 + b2
    return -2 * X.t() @ ((Y - Y_pred) @ W2.t()) * _sigmoid_prime(H)


def grad_b1(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    H = X @ W1 + b1
    Y_pred = torch.sigmoid(H) @ W2 + b2
    return -2 * ((Y - Y_pred) @ W2.t()) * _sigmoid_prime(H)


def grad_W2(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    Y_pred = torch.sigmoid(X @ W1 + b1) @ W2 + b2
    return -2 * torch.sigmoid(X @ W1 + b1).t() @ (Y - Y_pred)


def grad_b2(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    Y_pred = torch.sigmoid(X @ W1 + b1) @ W2 + b2
    return -2 * (Y - Y_pred).t()
