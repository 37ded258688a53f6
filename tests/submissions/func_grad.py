"""Uses torch.func.grad instead of a derived formula (bound at import, called in the function)."""

import torch
from torch.func import grad


def _loss(W1, X, Y, b1, W2, b2):
    return ((Y - torch.sigmoid(X @ W1 + b1) @ W2 - b2) ** 2).sum()


def grad_W1(X, Y, W1, b1, W2, b2):
    return grad(_loss)(W1, X, Y, b1, W2, b2)


def batched(X):
    # vmap is not differentiation: it stays allowed.
    return torch.func.vmap(lambda row: row * 2)(X)
