"""Naive convolution (stride, pad) and max pooling (pool size and stride independent), in a course's numpy
convention with the hyperparameters as keywords: ``conv_forward(x, w, b, stride=1, pad=0)``.

Sizes are kept small (these are loops in numpy); the constraints keep every drawn case valid: the padded input
is at least as large as the kernel or window, so every output has at least one element.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradcheckers.assignment import Hyperparameter, Sizes
from gradcheckers.layer import Layer, Variant

# -- convolution (cross-correlation, as in every deep-learning library) ---------------------------------------


def _out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - kernel) // stride


def conv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> tuple[np.ndarray, Any]:
    n, _, h, wd = x.shape
    f, _, kh, kw = w.shape
    ho, wo = _out_size(h, kh, stride, pad), _out_size(wd, kw, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, f, ho, wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            window = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, stride, pad)


def conv_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, w, stride, pad = cache
    _, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            rows, cols = slice(i * stride, i * stride + kh), slice(j * stride, j * stride + kw)
            dw += np.tensordot(dout[:, :, i, j], xp[:, :, rows, cols], axes=([0], [0]))
            dxp[:, :, rows, cols] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))
    return dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]], dw, dout.sum(axis=(0, 2, 3))


def _conv_reference(x: Tensor, w: Tensor, b: Tensor, stride: int, pad: int) -> Tensor:
    return torch.nn.functional.conv2d(x, w, b, stride=stride, padding=pad)


def _conv_loops(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    """Six nested loops, one multiply-add at a time, the padding handled by bounds checks instead of np.pad."""
    x, w, stride, pad = cache
    n, _c, h, wd = x.shape
    f, _, kh, kw = w.shape
    dx, dw, db = np.zeros_like(x), np.zeros_like(w), np.zeros(f, dtype=dout.dtype)
    for s in range(n):
        for k in range(f):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    g = dout[s, k, i, j]
                    db[k] += g
                    for p in range(kh):
                        for q in range(kw):
                            r, t = i * stride + p - pad, j * stride + q - pad
                            if 0 <= r < h and 0 <= t < wd:
                                dx[s, :, r, t] += g * w[k, :, p, q]
                                dw[k, :, p, q] += g * x[s, :, r, t]
    return dx, dw, db


def _conv_im2col(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    """im2col: the windows as columns, then two matrix products."""
    x, w, stride, pad = cache
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    ho, wo = dout.shape[2], dout.shape[3]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((n, ho, wo, c * kh * kw), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            cols[:, i, j] = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw].reshape(n, -1)
    g = dout.transpose(0, 2, 3, 1).reshape(-1, f)
    dw = (g.T @ cols.reshape(-1, c * kh * kw)).reshape(w.shape)
    dcols = (g @ w.reshape(f, -1)).reshape(n, ho, wo, c, kh, kw)
    dxp = np.zeros_like(xp)
    for i in range(ho):
        for j in range(wo):
            dxp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw] += dcols[:, i, j]
    return dxp[:, :, pad:pad + h, pad:pad + wd], dw, g.sum(axis=0)


def _conv_padding_kept(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    x, w, stride, pad = cache
    _, dw, db = conv_backward(dout, cache)
    dx, _, _ = conv_backward(dout, (np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))), w, stride, 0))
    return dx, dw, db  # the gradient of the padded input, padding and all


def _conv_stride_ignored(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    x, w, _stride, pad = cache
    dx, _, db = conv_backward(dout, cache)
    _, dw, _ = conv_backward(dout, (x, w, 1, pad))  # windows at i, not i * stride
    return dx, dw, db


def _conv_kernel_flipped(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    x, w, stride, pad = cache
    _, dw, db = conv_backward(dout, cache)
    dx, _, _ = conv_backward(dout, (x, w[:, :, ::-1, ::-1], stride, pad))  # convolution, not cross-correlation
    return dx, dw, db


def _conv_db_per_position(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    dx, dw, _ = conv_backward(dout, cache)
    return dx, dw, dout.sum(axis=(0, 2, 3)) / (dout.shape[2] * dout.shape[3])


def _conv_valid(s: Sizes) -> bool:
    return int(s.H) + 2 * int(s.pad) >= int(s.K) and int(s.W) + 2 * int(s.pad) >= int(s.K) and int(s.pad) < int(s.K)


CONV = Layer(
    name="conv",
    title="naive 2-d convolution (cross-correlation) with stride and zero padding: conv_forward(x, w, b, stride, pad)",
    inputs={"x": ("N", "C", "H", "W"), "w": ("F", "C", "K", "K"), "b": ("F",)},
    sizes={"N": (1, 2), "C": (1, 2), "H": (1, 5), "W": (1, 5), "F": (1, 2), "K": (1, 3)},
    hyperparameters={"stride": Hyperparameter.ints(1, 2), "pad": Hyperparameter.ints(0, 1)},
    where=_conv_valid,
    forward=conv_forward,
    backward=conv_backward,
    reference=_conv_reference,
    wrong={
        "dx keeps the padding": Variant(_conv_padding_kept, "x"),
        "dw ignores the stride": Variant(_conv_stride_ignored, "w"),
        "dx with the kernel flipped": Variant(_conv_kernel_flipped, "x"),
        "db averaged over positions": Variant(_conv_db_per_position, "b"),
    },
    correct={"six loops": Variant(_conv_loops), "im2col": Variant(_conv_im2col)},
)

# -- max pooling: a pool x pool window every `stride` positions (overlapping when stride < pool) -----------------


def maxpool_forward(x: np.ndarray, pool: int, stride: int) -> tuple[np.ndarray, Any]:
    n, c, h, w = x.shape
    ho, wo = 1 + (h - pool) // stride, 1 + (w - pool) // stride
    out = np.empty((n, c, ho, wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = x[:, :, i * stride:i * stride + pool, j * stride:j * stride + pool].max(axis=(2, 3))
    return out, (x, pool, stride)


def maxpool_backward(dout: np.ndarray, cache: Any) -> np.ndarray:
    x, pool, stride = cache
    n, c = x.shape[:2]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * stride:i * stride + pool, j * stride:j * stride + pool].reshape(n, c, -1)
            k = window.argmax(axis=2)
            r, t = i * stride + k // pool, j * stride + k % pool
            for s in range(n):
                for ch in range(c):
                    dx[s, ch, r[s, ch], t[s, ch]] += dout[s, ch, i, j]  # += : overlapping windows share inputs
    return dx


def _maxpool_reference(x: Tensor, pool: int, stride: int) -> Tensor:
    return torch.nn.functional.max_pool2d(x, pool, stride)


def _maxpool_masks(dout: np.ndarray, cache: Any) -> np.ndarray:
    x, pool, stride = cache
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            rows, cols = slice(i * stride, i * stride + pool), slice(j * stride, j * stride + pool)
            window = x[:, :, rows, cols]
            is_max = window == window.max(axis=(2, 3), keepdims=True)
            dx[:, :, rows, cols] += is_max * dout[:, :, i, j][:, :, None, None]
    return dx


def _maxpool_unravel(dout: np.ndarray, cache: Any) -> np.ndarray:
    x, pool, stride = cache
    dx = np.zeros_like(x)
    for s, ch, i, j in np.ndindex(*dout.shape):
        window = x[s, ch, i * stride:i * stride + pool, j * stride:j * stride + pool]
        p, q = np.unravel_index(np.argmax(window), window.shape)
        dx[s, ch, i * stride + p, j * stride + q] += dout[s, ch, i, j]
    return dx


def _maxpool_window_is_stride(dout: np.ndarray, cache: Any) -> np.ndarray:
    x, _pool, stride = cache
    return maxpool_backward(dout, (x, stride, stride))  # the window's size taken from the stride


def _maxpool_assigned(dout: np.ndarray, cache: Any) -> np.ndarray:
    x, pool, stride = cache
    dx = np.zeros_like(x)
    for s, ch, i, j in np.ndindex(*dout.shape):
        window = x[s, ch, i * stride:i * stride + pool, j * stride:j * stride + pool]
        p, q = np.unravel_index(np.argmax(window), window.shape)
        dx[s, ch, i * stride + p, j * stride + q] = dout[s, ch, i, j]  # = where overlapping windows need +=
    return dx


def _maxpool_spread(dout: np.ndarray, cache: Any) -> np.ndarray:
    x, pool, stride = cache
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dx[:, :, i * stride:i * stride + pool, j * stride:j * stride + pool] += \
                dout[:, :, i, j][:, :, None, None] / pool**2  # average pooling's gradient
    return dx


def _maxpool_no_upstream(dout: np.ndarray, cache: Any) -> np.ndarray:
    return maxpool_backward(np.ones_like(dout), cache)


def _pool_valid(s: Sizes) -> bool:
    return int(s.H) >= int(s.pool) and int(s.W) >= int(s.pool)


MAXPOOL = Layer(
    name="maxpool",
    title="max pooling with independent pool size and stride: maxpool_forward(x, pool, stride)",
    inputs={"x": ("N", "C", "H", "W")},
    sizes={"N": (1, 2), "C": (1, 2), "H": (1, 5), "W": (1, 5)},
    hyperparameters={"pool": Hyperparameter.ints(1, 3), "stride": Hyperparameter.ints(1, 3)},
    where=_pool_valid,
    forward=maxpool_forward,
    backward=maxpool_backward,
    reference=_maxpool_reference,
    wrong={
        "the window's size taken from the stride": Variant(_maxpool_window_is_stride, "x"),
        "= where overlapping windows need +=": Variant(_maxpool_assigned, "x"),
        "spread over the window (average pooling)": Variant(_maxpool_spread, "x"),
        "no upstream gradient": Variant(_maxpool_no_upstream, "x"),
    },
    correct={"max masks": Variant(_maxpool_masks), "unravel_index per window": Variant(_maxpool_unravel)},
)

LAYERS = (CONV, MAXPOOL)
