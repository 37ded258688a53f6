"""A correct submission for the softmax-classifier assignment (relu hidden layer, summed cross-entropy)."""

import torch


def _backward(X, y, W1, b1, W2, b2):
    H = X @ W1 + b1
    Hs = torch.relu(H)
    S = Hs @ W2 + b2
    G = torch.softmax(S, dim=1)
    G[torch.arange(len(y)), y] -= 1  # dS = softmax(S) - onehot(y), one row per sample
    dH = (G @ W2.T) * (H > 0)
    return Hs, G, dH


def grad_W1(X, y, W1, b1, W2, b2):
    return X.T @ _backward(X, y, W1, b1, W2, b2)[2]


def grad_b1(X, y, W1, b1, W2, b2):
    return _backward(X, y, W1, b1, W2, b2)[2].sum(0)


def grad_W2(X, y, W1, b1, W2, b2):
    Hs, G, _ = _backward(X, y, W1, b1, W2, b2)
    return Hs.T @ G


def grad_b2(X, y, W1, b1, W2, b2):
    return _backward(X, y, W1, b1, W2, b2)[1].sum(0)
