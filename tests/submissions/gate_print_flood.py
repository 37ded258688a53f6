"""Correct, but prints about 1 MB while loading and in every call of grad_W1."""

import sys

import torch


def _parts(X, Y, W1, b1, W2, b2):
    Hs = torch.sigmoid(X @ W1 + b1)
    G = -2 * (Y - (Hs @ W2 + b2))
    return Hs, G, (G @ W2.T) * Hs * (1 - Hs)


LINE = "debugging output " * 60 + "\n"  # about 1 KB
for _ in range(1024):
    print(LINE, end="")


def grad_W1(X, Y, W1, b1, W2, b2):
    for _ in range(1024):
        sys.stdout.write(LINE)
    print("stderr too", file=sys.stderr)
    return X.T @ _parts(X, Y, W1, b1, W2, b2)[2]


def grad_b1(X, Y, W1, b1, W2, b2):
    return _parts(X, Y, W1, b1, W2, b2)[2].sum(0)


def grad_W2(X, Y, W1, b1, W2, b2):
    Hs, G, _ = _parts(X, Y, W1, b1, W2, b2)
    return Hs.T @ G


def grad_b2(X, Y, W1, b1, W2, b2):
    return _parts(X, Y, W1, b1, W2, b2)[1].sum(0)
