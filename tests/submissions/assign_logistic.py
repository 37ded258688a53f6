"""A correct submission for the logistic-regression assignment, in numpy (b has shape (1,))."""

import numpy as np


def gradients(X, y, w, b):
    X, y, w, b = (t.numpy() for t in (X, y, w, b))
    z = X @ w + b
    p = np.exp(-np.logaddexp(0.0, -z))  # sigmoid(z) without overflow
    dz = p - y
    return {"w": X.T @ dz, "b": dz.sum(keepdims=True)}
