"""Trains "forever" at import time."""

import time

time.sleep(1000)


def grad_W1(X, Y, W1, b1, W2, b2):
    return X
