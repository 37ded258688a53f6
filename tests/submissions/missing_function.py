"""Defines grad_W1 only; grad_b1 is not a function; grad_W2 and grad_b2 are missing."""


def grad_W1(X, Y, W1, b1, W2, b2):
    return X.T @ X


grad_b1 = 3
