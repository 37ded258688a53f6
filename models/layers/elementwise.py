"""Affine and elementwise layers in a course's numpy convention: ``out, cache = f_forward(...)``,
``grads = f_backward(dout, cache)``; each with its torch reference, realistic mistakes, and other correct
ways to write it.

Every derivative sits next to its forward, as in micrograd. The wrong variants are mistakes students make
(a forgotten upstream gradient, the input used where the output belongs, a transposed weight), each failing
at one named input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradcheckers.assignment import Hyperparameter
from gradcheckers.layer import Layer, Variant

# -- affine: out = x.reshape(N, -1) @ w + b, for x of any rank ------------------------------------------------


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w)


def affine_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, w = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def _affine_reference(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1) @ w + b


def _affine_einsum(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, w = cache
    flat = x.reshape(len(x), -1)
    dx = np.einsum("nm,dm->nd", dout, w).reshape(x.shape)
    return dx, np.einsum("nd,nm->dm", flat, dout), np.einsum("nm->m", dout)


def _affine_loops(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, w = cache
    flat = x.reshape(len(x), -1)
    dx, dw, db = np.zeros_like(flat), np.zeros_like(w), np.zeros(w.shape[1], dtype=dout.dtype)
    for n in range(len(x)):  # one sample at a time: the per-sample gradients summed
        dx[n] = w @ dout[n]
        dw += np.outer(flat[n], dout[n])
        db += dout[n]
    return dx.reshape(x.shape), dw, db


def _affine_db_wrong_axis(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    dx, dw, _ = affine_backward(dout, cache)
    return dx, dw, dout.sum(axis=1)


def _affine_dx_flat(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    _, dw, db = affine_backward(dout, cache)
    return dout @ cache[1].T, dw, db  # not reshaped back to x's shape


def _affine_dw_no_upstream(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    x, _w = cache
    dx, _, db = affine_backward(dout, cache)
    return dx, x.reshape(len(x), -1).T @ np.ones_like(dout), db


def _affine_dw_transposed(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    x, w = cache
    dx, _, db = affine_backward(dout, cache)
    return dx, (dout.T @ x.reshape(len(x), -1)).reshape(w.shape), db  # reshaped to fit: the values are transposed


def _x_any_rank(sizes: Any, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((sizes.N, sizes.A, sizes.B))


def _w_for_flat_x(sizes: Any, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((sizes.A * sizes.B, sizes.M))


AFFINE = Layer(
    name="affine",
    title="affine layer out = x.reshape(N, -1) @ w + b, x of shape (N, A, B)",
    inputs={"x": _x_any_rank, "w": _w_for_flat_x, "b": ("M",)},
    sizes={"N": (1, 4), "A": (1, 3), "B": (1, 3), "M": (1, 4)},
    forward=affine_forward,
    backward=affine_backward,
    reference=_affine_reference,
    wrong={
        "db summed over the wrong axis": Variant(_affine_db_wrong_axis, "b"),
        "dx not reshaped to x's shape": Variant(_affine_dx_flat, "x"),
        "dw without the upstream gradient": Variant(_affine_dw_no_upstream, "w"),
        "dw transposed": Variant(_affine_dw_transposed, "w"),
    },
    correct={"einsum": Variant(_affine_einsum), "a loop over samples": Variant(_affine_loops)},
)

# -- relu ----------------------------------------------------------------------------------------------------


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.maximum(0, x), x


def relu_backward(dout: np.ndarray, cache: np.ndarray) -> np.ndarray:
    return dout * (cache > 0)


def _relu_masked_copy(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    dx = dout.copy()
    dx[x <= 0] = 0
    return dx


def _relu_where(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, dout, 0.0).astype(dout.dtype)


RELU = Layer(
    name="relu",
    title="ReLU, out = max(0, x)",
    inputs={"x": ("N", "D")},
    forward=relu_forward,
    backward=relu_backward,
    reference=torch.relu,
    wrong={
        "the indicator without the upstream gradient": Variant(lambda dout, x: (x > 0).astype(dout.dtype), "x"),
        "the indicator inverted": Variant(lambda dout, x: dout * (x < 0), "x"),
        "relu applied to dout": Variant(lambda dout, x: np.maximum(dout, 0), "x"),
        "x where the indicator belongs": Variant(lambda dout, x: dout * np.maximum(x, 0), "x"),
    },
    correct={"a masked copy": Variant(_relu_masked_copy), "np.where": Variant(_relu_where)},
)

# -- leaky relu ----------------------------------------------------------------------------------------------


def leaky_relu_forward(x: np.ndarray, alpha: float) -> tuple[np.ndarray, Any]:
    return np.where(x > 0, x, alpha * x), (x, alpha)


def leaky_relu_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    x, alpha = cache
    return dout * np.where(x > 0, 1.0, alpha).astype(dout.dtype)


def _leaky_reference(x: Tensor, alpha: float) -> Tensor:
    return torch.nn.functional.leaky_relu(x, alpha)


def _leaky_two_masks(dout: np.ndarray, cache: Any) -> np.ndarray:
    x, alpha = cache
    return dout * (x > 0) + alpha * dout * (x <= 0)


def _leaky_in_place(dout: np.ndarray, cache: Any) -> np.ndarray:
    x, alpha = cache
    dx = dout.copy()
    dx[x < 0] *= alpha
    return dx


LEAKY_RELU = Layer(
    name="leaky-relu",
    title="leaky ReLU, out = x if x > 0 else alpha * x",
    inputs={"x": ("N", "D")},
    hyperparameters={"alpha": Hyperparameter.floats(0.01, 0.5)},
    forward=leaky_relu_forward,
    backward=leaky_relu_backward,
    reference=_leaky_reference,
    wrong={
        "the slope alpha forgotten": Variant(lambda dout, c: dout * (c[0] > 0), "x"),
        "alpha in place of dout on the negative side": Variant(lambda dout, c: np.where(c[0] > 0, dout, c[1]), "x"),
        "no upstream gradient": Variant(lambda dout, c: np.where(c[0] > 0, 1.0, c[1]), "x"),
        "alpha * x where alpha belongs": Variant(lambda dout, c: dout * np.where(c[0] > 0, 1.0, c[1] * c[0]), "x"),
    },
    correct={"two masks": Variant(_leaky_two_masks), "scaled in place": Variant(_leaky_in_place)},
)

# -- sigmoid and tanh ----------------------------------------------------------------------------------------


def sigmoid_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = 1 / (1 + np.exp(-x))
    return out, out


def sigmoid_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    return dout * out * (1 - out)


def _sigmoid_from_x(dout: np.ndarray, s: np.ndarray) -> np.ndarray:
    e = (1 - s) / s  # exp(-x), recovered from the output
    return dout * e / (1 + e) ** 2


SIGMOID = Layer(
    name="sigmoid",
    title="sigmoid, out = 1 / (1 + exp(-x))",
    inputs={"x": ("N", "D")},
    forward=sigmoid_forward,
    backward=sigmoid_backward,
    reference=torch.sigmoid,
    wrong={
        "(1 - s) missing": Variant(lambda dout, s: dout * s, "x"),
        "no upstream gradient": Variant(lambda dout, s: s * (1 - s), "x"),
        "the input's formula applied to the output": Variant(lambda dout, s: dout * np.exp(-s) / (1 + np.exp(-s)) ** 2,
                                                            "x"),
    },
    correct={"s - s^2": Variant(lambda dout, s: dout * (s - s * s)), "exp(-x) / (1 + exp(-x))^2":
             Variant(_sigmoid_from_x)},
)


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = np.tanh(x)
    return out, out


def tanh_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    return dout * (1 - out**2)


TANH = Layer(
    name="tanh",
    title="tanh, out = tanh(x)",
    inputs={"x": ("N", "D")},
    forward=tanh_forward,
    backward=tanh_backward,
    reference=torch.tanh,
    wrong={
        "1 - out instead of 1 - out^2": Variant(lambda dout, t: dout * (1 - t), "x"),
        "no upstream gradient": Variant(lambda dout, t: 1 - t**2, "x"),
        "1 + out^2": Variant(lambda dout, t: dout * (1 + t**2), "x"),
    },
    correct={"(1 - t)(1 + t)": Variant(lambda dout, t: dout * (1 - t) * (1 + t)),
             "dout - dout t^2": Variant(lambda dout, t: dout - dout * t * t)},
)

LAYERS = (AFFINE, RELU, LEAKY_RELU, SIGMOID, TANH)
