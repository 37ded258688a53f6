"""Hostile (numpy mode): imports torch to let autograd do the work."""

import numpy as np

try:
    import torch

    print("torch is here", torch.__version__)
except BaseException as exc:
    print("no torch", type(exc).__name__)


def grad_W1(X, Y, W1, b1, W2, b2):
    return np.zeros_like(W1)
