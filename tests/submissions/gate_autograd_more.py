"""Right gradients, computed with autograd: functorch.vjp (W1) and forward-mode AD (b1)."""

import functorch
import torch
import torch.autograd.forward_ad as fwAD


def _parts(X, Y, W1, b1, W2, b2):
    Hs = torch.sigmoid(X @ W1 + b1)
    G = -2 * (Y - (Hs @ W2 + b2))
    return Hs, G, (G @ W2.T) * Hs * (1 - Hs)


def _loss(X, Y, W1, b1, W2, b2):
    return ((Y - (torch.sigmoid(X @ W1 + b1) @ W2 + b2)) ** 2).sum()


def grad_W1(X, Y, W1, b1, W2, b2):
    _, pullback = functorch.vjp(lambda W: _loss(X, Y, W, b1, W2, b2), W1)
    return pullback(torch.ones((), dtype=X.dtype))[0]


def grad_b1(X, Y, W1, b1, W2, b2):
    columns = []
    with fwAD.dual_level():
        for j in range(b1.shape[0]):
            tangent = torch.zeros_like(b1)
            tangent[j] = 1
            loss = _loss(X, Y, W1, fwAD.make_dual(b1, tangent), W2, b2)
            columns.append(fwAD.unpack_dual(loss).tangent)
    return torch.stack(columns)


def grad_W2(X, Y, W1, b1, W2, b2):
    Hs, G, _ = _parts(X, Y, W1, b1, W2, b2)
    return Hs.T @ G


def grad_b2(X, Y, W1, b1, W2, b2):
    return _parts(X, Y, W1, b1, W2, b2)[1].sum(0)
