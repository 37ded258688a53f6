"""Correct, except that grad_W1 raises an exception, whose text holds what no report may pass on raw: an ANSI
colour code (terminals), a NUL byte (XML) and a lone surrogate (UTF-8)."""

import torch


def _parts(X, Y, W1, b1, W2, b2):
    Hs = torch.sigmoid(X @ W1 + b1)
    G = -2 * (Y - (Hs @ W2 + b2))
    return Hs, G, (G @ W2.T) * Hs * (1 - Hs)


def grad_W1(X, Y, W1, b1, W2, b2):
    raise ValueError("not derived yet \x1b[31m(in red)\x1b[0m \x00 \ud800")


def grad_b1(X, Y, W1, b1, W2, b2):
    return _parts(X, Y, W1, b1, W2, b2)[2].sum(0)


def grad_W2(X, Y, W1, b1, W2, b2):
    Hs, G, _ = _parts(X, Y, W1, b1, W2, b2)
    return Hs.T @ G


def grad_b2(X, Y, W1, b1, W2, b2):
    return _parts(X, Y, W1, b1, W2, b2)[1].sum(0)
