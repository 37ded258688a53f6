"""Calls backward() but swallows the refusal and returns a plausible result: still forbidden."""

import torch


def grad_b2(X, Y, W1, b1, W2, b2):
    try:
        b2.clone().requires_grad_().sum().backward()
    except BaseException:
        pass
    return -2 * (Y - torch.sigmoid(X @ W1 + b1) @ W2 - b2).sum(0)
