"""grad_W1 dereferences a null pointer; grad_b1 kills its own process; grad_W2 is fine."""

import ctypes
import os
import signal


def grad_W1(X, Y, W1, b1, W2, b2):
    ctypes.string_at(0)


def grad_b1(X, Y, W1, b1, W2, b2):
    os.kill(os.getpid(), signal.SIGKILL)


def grad_W2(X, Y, W1, b1, W2, b2):
    return X.T @ X
