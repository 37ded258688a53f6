"""A correct submission written with numpy only (numpy mode: the worker has no torch)."""

import numpy as np


def _parts(X, Y, W1, b1, W2, b2):
    Hs = 1 / (1 + np.exp(-(X @ W1 + b1)))
    G = -2 * (Y - (Hs @ W2 + b2))
    return Hs, G, (G @ W2.T) * Hs * (1 - Hs)


def grad_W1(X, Y, W1, b1, W2, b2):
    return X.T @ _parts(X, Y, W1, b1, W2, b2)[2]


def grad_b1(X, Y, W1, b1, W2, b2):
    return _parts(X, Y, W1, b1, W2, b2)[2].sum(0)


def grad_W2(X, Y, W1, b1, W2, b2):
    Hs, G, _ = _parts(X, Y, W1, b1, W2, b2)
    return Hs.T @ G


def grad_b2(X, Y, W1, b1, W2, b2):
    return _parts(X, Y, W1, b1, W2, b2)[1].sum(0)
