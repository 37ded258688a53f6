"""The template assignment with b's gradient not summed over the batch (right only for a batch of 1)."""


def grad_W(X, Y, W, b):
    return 2 * X.T @ (X @ W + b - Y) + 0.2 * W


def grad_b(X, Y, W, b):
    return 2 * (X @ W + b - Y)[0]
