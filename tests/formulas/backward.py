"""Hand-written backward passes as published (normalisation layers, softmax, normalize, attention), each in
more than one writing (compact formula, staged as in a computational graph, numpy), and published mistakes
in them. The verdict corpus (tests/test_verdict_corpus.py) checks every correct one passes under the default
policy in float64 and float32 and every mistake fails.

Every layer is checked through the loss ``sum(forward(**params) * dy)`` with a random upstream gradient
``dy``, so ``dy`` is the ``dout`` of the backward functions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

EPS = 1e-5

Forward = Callable[..., Tensor]
Backward = Callable[..., dict[str, object]]


@dataclass(frozen=True)
class Layer:
    name: str
    forward: Forward
    parameters: tuple[str, ...]
    shapes: Callable[[int, int], dict[str, tuple[int, ...]]]  # (N, D) -> shape of each parameter
    correct: dict[str, Backward]
    wrong: dict[str, Backward]


# --- batch norm (training mode, biased variance), x: (N, D) ----------------------------------------------

def batchnorm(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    mu = x.mean(0)
    var = ((x - mu) ** 2).mean(0)
    return gamma * (x - mu) / torch.sqrt(var + EPS) + beta


def batchnorm_compact(x: Tensor, gamma: Tensor, beta: Tensor, dy: Tensor) -> dict[str, object]:
    n = x.shape[0]
    mu = x.mean(0)
    inv = 1.0 / torch.sqrt(((x - mu) ** 2).mean(0) + EPS)
    xhat = (x - mu) * inv
    dxhat = dy * gamma
    dx = inv / n * (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
    return {"x": dx, "gamma": (dy * xhat).sum(0), "beta": dy.sum(0)}


def batchnorm_staged(x: Tensor, gamma: Tensor, beta: Tensor, dy: Tensor) -> dict[str, object]:
    """Backpropagation through the graph, one node at a time (Kratzert's widely copied writing)."""
    n = x.shape[0]
    mu = x.mean(0)
    xmu = x - mu
    sq = xmu**2
    var = sq.mean(0)
    sqrtvar = torch.sqrt(var + EPS)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    dbeta = dy.sum(0)
    dgamma = (dy * xhat).sum(0)
    dxhat = dy * gamma
    divar = (dxhat * xmu).sum(0)
    dxmu1 = dxhat * ivar
    dsqrtvar = -1.0 / sqrtvar**2 * divar
    dvar = 0.5 / torch.sqrt(var + EPS) * dsqrtvar
    dsq = torch.ones_like(x) / n * dvar
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -(dxmu1 + dxmu2).sum(0)
    dx2 = torch.ones_like(x) / n * dmu
    return {"x": dx1 + dx2, "gamma": dgamma, "beta": dbeta}


def batchnorm_numpy(x: Tensor, gamma: Tensor, beta: Tensor, dy: Tensor) -> dict[str, object]:
    xn, g, d = x.numpy(), gamma.numpy(), dy.numpy()
    n = xn.shape[0]
    mu = xn.mean(0)
    var = ((xn - mu) ** 2).mean(0)
    xhat = (xn - mu) / np.sqrt(var + EPS)
    dx = (g / (n * np.sqrt(var + EPS))) * (n * d - d.sum(0) - xhat * (d * xhat).sum(0))
    return {"x": dx, "gamma": (d * xhat).sum(0), "beta": d.sum(0)}


def batchnorm_forgets_gamma(x: Tensor, gamma: Tensor, beta: Tensor, dy: Tensor) -> dict[str, object]:
    """A real historical bug: dX written with dy where dxhat = dy * gamma belongs."""
    n = x.shape[0]
    mu = x.mean(0)
    inv = 1.0 / torch.sqrt(((x - mu) ** 2).mean(0) + EPS)
    xhat = (x - mu) * inv
    dx = inv / n * (n * dy - dy.sum(0) - xhat * (dy * xhat).sum(0))
    return {"x": dx, "gamma": (dy * xhat).sum(0), "beta": dy.sum(0)}


def batchnorm_unbiased_variance(x: Tensor, gamma: Tensor, beta: Tensor, dy: Tensor) -> dict[str, object]:
    """The forward uses the biased variance; this backward the unbiased one (N - 1)."""
    n = x.shape[0]
    mu = x.mean(0)
    inv = 1.0 / torch.sqrt(((x - mu) ** 2).sum(0) / (n - 1) + EPS)
    xhat = (x - mu) * inv
    dxhat = dy * gamma
    dx = inv / n * (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0))
    return {"x": dx, "gamma": (dy * xhat).sum(0), "beta": dy.sum(0)}


def batchnorm_no_mean_term(x: Tensor, gamma: Tensor, beta: Tensor, dy: Tensor) -> dict[str, object]:
    """Forgets that the mean depends on x (the - sum(dxhat) term)."""
    n = x.shape[0]
    mu = x.mean(0)
    inv = 1.0 / torch.sqrt(((x - mu) ** 2).mean(0) + EPS)
    xhat = (x - mu) * inv
    dxhat = dy * gamma
    dx = inv / n * (n * dxhat - xhat * (dxhat * xhat).sum(0))
    return {"x": dx, "gamma": (dy * xhat).sum(0), "beta": dy.sum(0)}


# --- layer norm over the last axis, x: (N, D), gamma and beta: (D,) ---------------------------------------

def layernorm(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), gamma, beta, EPS)


def layernorm_compact(x: Tensor, gamma: Tensor, beta: Tensor, dy: Tensor) -> dict[str, object]:
    d = x.shape[-1]
    mu = x.mean(-1, keepdim=True)
    inv = 1.0 / torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + EPS)
    xhat = (x - mu) * inv
    g = dy * gamma
    dx = inv / d * (d * g - g.sum(-1, keepdim=True) - xhat * (g * xhat).sum(-1, keepdim=True))
    return {"x": dx, "gamma": (dy * xhat).sum(0), "beta": dy.sum(0)}


def layernorm_numpy(x: Tensor, gamma: Tensor, beta: Tensor, dy: Tensor) -> dict[str, object]:
    xn, gn, dn = x.numpy(), gamma.numpy(), dy.numpy()
    mu = xn.mean(-1, keepdims=True)
    var = xn.var(-1, keepdims=True)
    xhat = (xn - mu) / np.sqrt(var + EPS)
    g = dn * gn
    dxhat_mean = g.mean(-1, keepdims=True)
    dx = (g - dxhat_mean - xhat * (g * xhat).mean(-1, keepdims=True)) / np.sqrt(var + EPS)
    return {"x": dx, "gamma": (dn * xhat).sum(0), "beta": dn.sum(0)}


def layernorm_no_variance_term(x: Tensor, gamma: Tensor, beta: Tensor, dy: Tensor) -> dict[str, object]:
    d = x.shape[-1]
    mu = x.mean(-1, keepdim=True)
    inv = 1.0 / torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + EPS)
    xhat = (x - mu) * inv
    g = dy * gamma
    dx = inv / d * (d * g - g.sum(-1, keepdim=True))
    return {"x": dx, "gamma": (dy * xhat).sum(0), "beta": dy.sum(0)}


# --- group norm: x (N, C) with C = 2 groups of D/2, gamma and beta (C,) ---------------------------------

def groupnorm(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    return torch.nn.functional.group_norm(x[:, :, None], 2, gamma, beta, EPS)[:, :, 0]


def groupnorm_compact(x: Tensor, gamma: Tensor, beta: Tensor, dy: Tensor) -> dict[str, object]:
    n, c = x.shape
    xg = x.reshape(n, 2, c // 2)
    m = c // 2
    mu = xg.mean(-1, keepdim=True)
    inv = 1.0 / torch.sqrt(((xg - mu) ** 2).mean(-1, keepdim=True) + EPS)
    xhat = (xg - mu) * inv
    g = (dy * gamma).reshape(n, 2, m)
    dx = inv / m * (m * g - g.sum(-1, keepdim=True) - xhat * (g * xhat).sum(-1, keepdim=True))
    return {"x": dx.reshape(n, c), "gamma": (dy * xhat.reshape(n, c)).sum(0), "beta": dy.sum(0)}


# --- softmax over the last axis, x: (N, D) ----------------------------------------------------------------

def softmax(x: Tensor) -> Tensor:
    return torch.softmax(x, -1)


def softmax_compact(x: Tensor, dy: Tensor) -> dict[str, object]:
    s = torch.softmax(x, -1)
    return {"x": s * (dy - (dy * s).sum(-1, keepdim=True))}


def softmax_jacobian_numpy(x: Tensor, dy: Tensor) -> dict[str, object]:
    xn, dn = x.numpy(), dy.numpy()
    e = np.exp(xn - xn.max(-1, keepdims=True))
    s = e / e.sum(-1, keepdims=True)
    jac = s[:, :, None] * (np.eye(s.shape[1])[None] - s[:, None, :])  # J[n, i, j] = ds_i/dx_j
    return {"x": np.einsum("ni,nij->nj", dn, jac)}


def softmax_diagonal_only(x: Tensor, dy: Tensor) -> dict[str, object]:
    s = torch.softmax(x, -1)
    return {"x": s * (1 - s) * dy}


# --- normalize rows to unit length, x: (N, D) -------------------------------------------------------------

def normalize(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def normalize_compact(x: Tensor, dy: Tensor) -> dict[str, object]:
    r = x.norm(dim=-1, keepdim=True)
    y = x / r
    return {"x": (dy - y * (y * dy).sum(-1, keepdim=True)) / r}


def normalize_numpy(x: Tensor, dy: Tensor) -> dict[str, object]:
    xn, dn = x.numpy(), dy.numpy()
    r2 = (xn * xn).sum(-1, keepdims=True)
    r = np.sqrt(r2)
    return {"x": dn / r - xn * (xn * dn).sum(-1, keepdims=True) / (r2 * r)}


def normalize_no_projection(x: Tensor, dy: Tensor) -> dict[str, object]:
    return {"x": dy / x.norm(dim=-1, keepdim=True)}


# --- single-head attention softmax(Q K^T / sqrt(d)) V; Q, K, V: (N, D) ----------------------------------

def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    return torch.softmax(q @ k.T / q.shape[-1] ** 0.5, -1) @ v


def attention_compact(q: Tensor, k: Tensor, v: Tensor, dy: Tensor) -> dict[str, object]:
    scale = q.shape[-1] ** -0.5
    a = torch.softmax(q @ k.T * scale, -1)
    da = dy @ v.T
    ds = a * (da - (da * a).sum(-1, keepdim=True))
    return {"q": ds @ k * scale, "k": ds.T @ q * scale, "v": a.T @ dy}


def attention_no_scale_in_backward(q: Tensor, k: Tensor, v: Tensor, dy: Tensor) -> dict[str, object]:
    scale = q.shape[-1] ** -0.5
    a = torch.softmax(q @ k.T * scale, -1)
    da = dy @ v.T
    ds = a * (da - (da * a).sum(-1, keepdim=True))
    return {"q": ds @ k, "k": ds.T @ q * scale, "v": a.T @ dy}


def _norm_shapes(n: int, d: int) -> dict[str, tuple[int, ...]]:
    return {"x": (n, d), "gamma": (d,), "beta": (d,)}


LAYERS = (
    Layer("batchnorm", batchnorm, ("x", "gamma", "beta"), _norm_shapes,
          {"compact": batchnorm_compact, "staged": batchnorm_staged, "numpy": batchnorm_numpy},
          {"forgets-gamma": batchnorm_forgets_gamma, "unbiased-variance": batchnorm_unbiased_variance,
           "no-mean-term": batchnorm_no_mean_term}),
    Layer("layernorm", layernorm, ("x", "gamma", "beta"), _norm_shapes,
          {"compact": layernorm_compact, "numpy": layernorm_numpy},
          {"no-variance-term": layernorm_no_variance_term}),
    Layer("groupnorm", groupnorm, ("x", "gamma", "beta"), lambda n, d: _norm_shapes(n, 2 * d),
          {"compact": groupnorm_compact}, {}),
    Layer("softmax", softmax, ("x",), lambda n, d: {"x": (n, d)},
          {"compact": softmax_compact, "jacobian-numpy": softmax_jacobian_numpy},
          {"diagonal-only": softmax_diagonal_only}),
    Layer("normalize", normalize, ("x",), lambda n, d: {"x": (n, d)},
          {"compact": normalize_compact, "numpy": normalize_numpy}, {"no-projection": normalize_no_projection}),
    Layer("attention", attention, ("q", "k", "v"), lambda n, d: {"q": (n, d), "k": (n, d), "v": (n, d)},
          {"compact": attention_compact}, {"no-scale-in-backward": attention_no_scale_in_backward}),
)
