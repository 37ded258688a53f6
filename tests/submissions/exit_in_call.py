"""grad_W1 calls sys.exit, grad_b1 os._exit, grad_W2 raises SystemExit; grad_b2 is fine."""

import os
import sys


def grad_W1(X, Y, W1, b1, W2, b2):
    sys.exit("done")


def grad_b1(X, Y, W1, b1, W2, b2):
    os._exit(5)


def grad_W2(X, Y, W1, b1, W2, b2):
    raise SystemExit


def grad_b2(X, Y, W1, b1, W2, b2):
    return Y.sum(0)
