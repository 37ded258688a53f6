"""grad_W1 spins forever, grad_b1 sleeps forever; grad_W2 is fine."""

import time


def grad_W1(X, Y, W1, b1, W2, b2):
    while True:
        pass


def grad_b1(X, Y, W1, b1, W2, b2):
    time.sleep(1000)


def grad_W2(X, Y, W1, b1, W2, b2):
    return X.T @ X
