"""Imports a helper module from its own folder; the helper also tries to write outside the worker."""

from helper_module import double

TARGET = "@TARGET@"


def grad_W1(X, Y, W1, b1, W2, b2):
    return double(W1)
