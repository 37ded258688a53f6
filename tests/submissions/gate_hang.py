"""Correct, except that grad_W1 spins forever and grad_b1 sleeps forever."""

import time

import torch


def _parts(X, Y, W1, b1, W2, b2):
    Hs = torch.sigmoid(X @ W1 + b1)
    G = -2 * (Y - (Hs @ W2 + b2))
    return Hs, G, (G @ W2.T) * Hs * (1 - Hs)


def grad_W1(X, Y, W1, b1, W2, b2):
    while True:
        pass


def grad_b1(X, Y, W1, b1, W2, b2):
    time.sleep(1000)


def grad_W2(X, Y, W1, b1, W2, b2):
    Hs, G, _ = _parts(X, Y, W1, b1, W2, b2)
    return Hs.T @ G


def grad_b2(X, Y, W1, b1, W2, b2):
    return _parts(X, Y, W1, b1, W2, b2)[1].sum(0)
