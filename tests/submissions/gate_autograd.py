"""Right gradients, computed with autograd: Tensor.backward (W1), torch.autograd.grad (b1),
torch.func.grad (W2) and torch.autograd.functional.jacobian (b2)."""

import torch


def _parts(X, Y, W1, b1, W2, b2):
    Hs = torch.sigmoid(X @ W1 + b1)
    G = -2 * (Y - (Hs @ W2 + b2))
    return Hs, G, (G @ W2.T) * Hs * (1 - Hs)


def _loss(X, Y, W1, b1, W2, b2):
    return ((Y - (torch.sigmoid(X @ W1 + b1) @ W2 + b2)) ** 2).sum()


def grad_W1(X, Y, W1, b1, W2, b2):
    W1 = W1.detach().clone().requires_grad_()
    _loss(X, Y, W1, b1, W2, b2).backward()
    return W1.grad


def grad_b1(X, Y, W1, b1, W2, b2):
    b1 = b1.detach().clone().requires_grad_()
    return torch.autograd.grad(_loss(X, Y, W1, b1, W2, b2), b1)[0]


def grad_W2(X, Y, W1, b1, W2, b2):
    return torch.func.grad(lambda W: _loss(X, Y, W1, b1, W, b2))(W2)


def grad_b2(X, Y, W1, b1, W2, b2):
    return torch.autograd.functional.jacobian(lambda b: _loss(X, Y, W1, b1, W2, b), b2)
