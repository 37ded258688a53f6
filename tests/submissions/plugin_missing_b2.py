"""Right gradients for W1, b1 and W2; grad_b2 is missing (the plugin fails only that parameter's item)."""

import torch


def _dH(X, Y, W1, b1, W2, b2):
    Hs = torch.sigmoid(X @ W1 + b1)
    G = -2 * (Y - (Hs @ W2 + b2))
    return Hs, G, (G @ W2.T) * Hs * (1 - Hs)


def grad_W1(X, Y, W1, b1, W2, b2):
    return X.T @ _dH(X, Y, W1, b1, W2, b2)[2]


def grad_b1(X, Y, W1, b1, W2, b2):
    return _dH(X, Y, W1, b1, W2, b2)[2].sum(0)


def grad_W2(X, Y, W1, b1, W2, b2):
    Hs, G, _ = _dH(X, Y, W1, b1, W2, b2)
    return Hs.T @ G
