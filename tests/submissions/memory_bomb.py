"""grad_W1 asks torch for 400 GB, grad_b1 asks Python for 80 GB, on_device 4 TB on X's device; grad_W2 is fine."""

import torch


def grad_W1(X, Y, W1, b1, W2, b2):
    return torch.empty(10**11)


def grad_b1(X, Y, W1, b1, W2, b2):
    x = [0] * 10**10
    return torch.tensor(len(x))


def grad_W2(X, Y, W1, b1, W2, b2):
    return X.T @ X


def on_device(X, Y, W1, b1, W2, b2):
    return torch.empty(10**12, device=X.device)  # 4 TB wherever X lives
