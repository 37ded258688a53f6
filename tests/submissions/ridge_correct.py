"""A correct submission for the shipped template assignment (ridge regression, LAMBDA = 0.1)."""


def grad_W(X, Y, W, b):
    return 2 * X.T @ (X @ W + b - Y) + 0.2 * W


def grad_b(X, Y, W, b):
    return 2 * (X @ W + b - Y).sum(0)
