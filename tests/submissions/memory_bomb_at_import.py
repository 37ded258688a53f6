"""Allocates 80 GB while loading."""

CACHE = [0] * 10**10


def grad_W1(X, Y, W1, b1, W2, b2):
    return X
