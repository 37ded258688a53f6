"""A correct submission for tests/assignments/column_sigmoid.py, written as the published notebooks do (one
sample per column, sigmoid as 1 / (1 + exp(-z)), its derivative as A (1 - A))."""

import torch


def sigmoid(z):
    return 1 / (1 + torch.exp(-z))


def gradients(X, Y, W1, b1, W2, b2):
    A1 = sigmoid(W1 @ X + b1)
    A2 = sigmoid(W2 @ A1 + b2)
    dZ2 = 2 * (A2 - Y) * A2 * (1 - A2)
    dZ1 = (W2.T @ dZ2) * A1 * (1 - A1)
    return {"W1": dZ1 @ X.T, "b1": dZ1.sum(dim=1, keepdim=True), "W2": dZ2 @ A1.T,
            "b2": dZ2.sum(dim=1, keepdim=True)}
