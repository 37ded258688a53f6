"""Correct, except that grad_W2 asks for 400 GB."""

import torch


def _parts(X, Y, W1, b1, W2, b2):
    Hs = torch.sigmoid(X @ W1 + b1)
    G = -2 * (Y - (Hs @ W2 + b2))
    return Hs, G, (G @ W2.T) * Hs * (1 - Hs)


def grad_W1(X, Y, W1, b1, W2, b2):
    return X.T @ _parts(X, Y, W1, b1, W2, b2)[2]


def grad_b1(X, Y, W1, b1, W2, b2):
    return _parts(X, Y, W1, b1, W2, b2)[2].sum(0)


def grad_W2(X, Y, W1, b1, W2, b2):
    waste = torch.empty(10**11)
    Hs, G, _ = _parts(X, Y, W1, b1, W2, b2)
    return Hs.T @ G + waste.sum()


def grad_b2(X, Y, W1, b1, W2, b2):
    return _parts(X, Y, W1, b1, W2, b2)[1].sum(0)
