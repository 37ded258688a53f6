"""Batch norm (train mode), layer norm and dropout (its mask drawn as an input), in a course's numpy convention.

The normalizations' backward passes are where published code most often goes wrong: the mean and the variance
depend on every input, so the gradient of one output reaches every input of its group.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradcheckers.assignment import Hyperparameter
from gradcheckers.backward import mask, positive
from gradcheckers.layer import Layer, Variant

EPS = 1e-5

# -- batch norm, train mode: normalize each feature over the batch (axis 0) -----------------------------------


def batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, Any]:
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    inv = 1 / np.sqrt(var + EPS)
    xhat = (x - mu) * inv
    return gamma * xhat + beta, (xhat, gamma, inv)


def batchnorm_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xhat, gamma, inv = cache
    dxhat = dout * gamma
    # d xhat_i / d x_j = inv (delta_ij - 1/N - xhat_i xhat_j / N): the mean and the variance see every sample.
    dx = inv * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def _batchnorm_reference(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    # Written out rather than F.batch_norm, which refuses a batch of one in training mode (a valid case here).
    mu = x.mean(dim=0)
    var = ((x - mu) ** 2).mean(dim=0)
    return gamma * (x - mu) / torch.sqrt(var + EPS) + beta


def _batchnorm_staged(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    """The computational-graph way: back through xhat, the variance and the mean one stage at a time."""
    xhat, gamma, inv = cache
    n = dout.shape[0]
    xmu = xhat / inv
    dxhat = dout * gamma
    dvar = (dxhat * xmu).sum(axis=0) * -0.5 * inv**3
    dmu = -(dxhat * inv).sum(axis=0) + dvar * (-2 * xmu).mean(axis=0)
    dx = dxhat * inv + dvar * 2 * xmu / n + dmu / n
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def _batchnorm_compact(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    xhat, gamma, inv = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = np.einsum("nd,nd->d", dout, xhat)
    dx = gamma * inv / n * (n * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


def _bn_dx_ignores_statistics(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    _xhat, gamma, inv = cache
    _, dgamma, dbeta = batchnorm_backward(dout, cache)
    return dout * gamma * inv, dgamma, dbeta  # as if the mean and variance were constants


def _bn_dgamma_without_xhat(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    dx, _, dbeta = batchnorm_backward(dout, cache)
    return dx, dout.sum(axis=0), dbeta


def _bn_dbeta_mean(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    dx, dgamma, _ = batchnorm_backward(dout, cache)
    return dx, dgamma, dout.mean(axis=0)


def _bn_dx_missing_variance_term(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    _xhat, gamma, inv = cache
    _, dgamma, dbeta = batchnorm_backward(dout, cache)
    dxhat = dout * gamma
    return inv * (dxhat - dxhat.mean(axis=0)), dgamma, dbeta


BATCHNORM = Layer(
    name="batchnorm",
    title=f"batch normalization, train mode (eps={EPS}): gamma * (x - mean) / sqrt(var + eps) + beta over the batch",
    inputs={"x": ("N", "D"), "gamma": positive(("D",)), "beta": ("D",)},
    sizes={"N": (1, 5), "D": (1, 4)},
    forward=batchnorm_forward,
    backward=batchnorm_backward,
    reference=_batchnorm_reference,
    wrong={
        "dx as if mean and variance were constants": Variant(_bn_dx_ignores_statistics, "x"),
        "dx without the variance's term": Variant(_bn_dx_missing_variance_term, "x"),
        "dgamma without xhat": Variant(_bn_dgamma_without_xhat, "gamma"),
        "dbeta averaged over the batch": Variant(_bn_dbeta_mean, "beta"),
    },
    correct={"stage by stage": Variant(_batchnorm_staged), "one compact line": Variant(_batchnorm_compact)},
)

# -- layer norm: normalize each sample over its features (axis 1) ---------------------------------------------


def layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, Any]:
    mu = x.mean(axis=1, keepdims=True)
    inv = 1 / np.sqrt(x.var(axis=1, keepdims=True) + EPS)
    xhat = (x - mu) * inv
    return gamma * xhat + beta, (xhat, gamma, inv)


def layernorm_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xhat, gamma, inv = cache
    dxhat = dout * gamma
    dx = inv * (dxhat - dxhat.mean(axis=1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=1, keepdims=True))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def _layernorm_reference(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    # Written out: F.layer_norm's fused kernel rounds x - mean to a non-zero value for one feature, where the
    # exact normalized value (and the numpy forward's) is 0.
    mu = x.mean(dim=1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=1, keepdim=True)
    return gamma * (x - mu) / torch.sqrt(var + EPS) + beta


def _layernorm_transposed(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    """Batch norm's backward on the transposes: layer norm is batch norm of x.T with gamma per sample."""
    xhat, gamma, inv = cache
    dxhat = (dout * gamma).T
    xt = xhat.T
    dx = inv.T * (dxhat - dxhat.mean(axis=0) - xt * (dxhat * xt).mean(axis=0))
    return dx.T, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def _layernorm_per_row(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    xhat, gamma, inv = cache
    dx = np.empty_like(dout)
    for n in range(dout.shape[0]):
        g = dout[n] * gamma
        jac = inv[n, 0] * (np.eye(len(g)) - 1 / len(g) - np.outer(xhat[n], xhat[n]) / len(g))
        dx[n] = jac @ g
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def _ln_batch_axis(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    xhat, gamma, inv = cache
    _, dgamma, dbeta = layernorm_backward(dout, cache)
    dxhat = dout * gamma
    return inv * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)), dgamma, dbeta  # batch norm's axis


def _ln_dgamma_wrong_axis(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    xhat, _, _ = cache
    dx, _, dbeta = layernorm_backward(dout, cache)
    return dx, (dout * xhat).sum(axis=1), dbeta


def _ln_missing_variance_term(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    _xhat, gamma, inv = cache
    _, dgamma, dbeta = layernorm_backward(dout, cache)
    dxhat = dout * gamma
    return inv * (dxhat - dxhat.mean(axis=1, keepdims=True)), dgamma, dbeta


def _ln_dx_without_gamma(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    xhat, _, inv = cache
    _, dgamma, dbeta = layernorm_backward(dout, cache)
    d = dout
    return inv * (d - d.mean(axis=1, keepdims=True) - xhat * (d * xhat).mean(axis=1, keepdims=True)), dgamma, dbeta


LAYERNORM = Layer(
    name="layernorm",
    title=f"layer normalization (eps={EPS}): gamma * (x - mean) / sqrt(var + eps) + beta over each sample's features",
    inputs={"x": ("N", "D"), "gamma": positive(("D",)), "beta": ("D",)},
    sizes={"N": (1, 4), "D": (1, 5)},
    forward=layernorm_forward,
    backward=layernorm_backward,
    reference=_layernorm_reference,
    wrong={
        "dx normalized over the batch axis": Variant(_ln_batch_axis, "x"),
        "dx without the variance's term": Variant(_ln_missing_variance_term, "x"),
        "dx without gamma": Variant(_ln_dx_without_gamma, "x"),
        "dgamma summed over the features": Variant(_ln_dgamma_wrong_axis, "gamma"),
    },
    correct={"batch norm on the transposes": Variant(_layernorm_transposed),
             "the Jacobian per sample": Variant(_layernorm_per_row)},
)

# -- dropout with a given mask: out = x * mask / p (inverted dropout, keep probability p) ----------------------


def dropout_forward(x: np.ndarray, keep_mask: np.ndarray, p: float) -> tuple[np.ndarray, Any]:
    return x * keep_mask / p, (keep_mask, p)


def dropout_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    keep_mask, p = cache
    return dout * keep_mask / p


def _dropout_reference(x: Tensor, keep_mask: Tensor, p: float) -> Tensor:
    return x * keep_mask / p


def _dropout_where(dout: np.ndarray, cache: Any) -> np.ndarray:
    keep_mask, p = cache
    return np.where(keep_mask > 0, dout / p, 0.0).astype(dout.dtype)


DROPOUT = Layer(
    name="dropout",
    title="inverted dropout with a given 0/1 mask, out = x * mask / p (p: the keep probability)",
    inputs={"x": ("N", "D"), "keep_mask": mask(("N", "D"), "p", scaled=False)},
    hyperparameters={"p": Hyperparameter.floats(0.25, 0.75)},
    forward=dropout_forward,
    backward=dropout_backward,
    reference=_dropout_reference,
    wrong={
        "the 1/p scaling forgotten": Variant(lambda dout, c: dout * c[0], "x"),
        "multiplied by p instead": Variant(lambda dout, c: dout * c[0] * c[1], "x"),
        "the mask forgotten": Variant(lambda dout, c: dout / c[1], "x"),
        "no upstream gradient": Variant(lambda dout, c: c[0] / c[1], "x"),
    },
    correct={"np.where": Variant(_dropout_where), "divide first": Variant(lambda dout, c: (dout / c[1]) * c[0])},
)

LAYERS = (BATCHNORM, LAYERNORM, DROPOUT)
