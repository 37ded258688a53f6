"""One step of a vanilla RNN, next_h = tanh(x Wx + prev_h Wh + b), in cs231n's convention:
``next_h, cache = rnn_step_forward(x, prev_h, Wx, Wh, b)``, ``dx, dprev_h, dWx, dWh, db = rnn_step_backward(dnext_h,
cache)``."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from gradcheckers.layer import Layer, Variant


def rnn_step_forward(x: np.ndarray, prev_h: np.ndarray, wx: np.ndarray, wh: np.ndarray, b: np.ndarray
                     ) -> tuple[np.ndarray, Any]:
    next_h = np.tanh(x @ wx + prev_h @ wh + b)
    return next_h, (x, prev_h, wx, wh, next_h)


def rnn_step_backward(dnext_h: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    x, prev_h, wx, wh, next_h = cache
    da = dnext_h * (1 - next_h**2)  # through tanh: 1 - tanh^2, from the output
    return da @ wx.T, da @ wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def _rnn_reference(x: Tensor, prev_h: Tensor, wx: Tensor, wh: Tensor, b: Tensor) -> Tensor:
    return (x @ wx + prev_h @ wh + b).tanh()


def _rnn_mapping(dnext_h: np.ndarray, cache: Any) -> dict[str, np.ndarray]:
    x, prev_h, wx, wh, next_h = cache
    da = dnext_h - dnext_h * next_h * next_h
    return {"dx": np.einsum("nh,dh->nd", da, wx), "dprev_h": np.einsum("nh,kh->nk", da, wh),
            "dwx": np.einsum("nd,nh->dh", x, da), "dwh": np.einsum("nk,nh->kh", prev_h, da), "db": da.sum(0)}


def _rnn_per_sample(dnext_h: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    """One sample at a time: per-sample gradients, the weights' summed."""
    x, prev_h, wx, wh, next_h = cache
    dx, dprev_h = np.empty_like(x), np.empty_like(prev_h)
    dwx, dwh, db = np.zeros_like(wx), np.zeros_like(wh), np.zeros(wh.shape[0], dtype=dnext_h.dtype)
    for n in range(x.shape[0]):
        da = dnext_h[n] * (1 - next_h[n]) * (1 + next_h[n])
        dx[n], dprev_h[n] = wx @ da, wh @ da
        dwx += np.outer(x[n], da)
        dwh += np.outer(prev_h[n], da)
        db += da
    return dx, dprev_h, dwx, dwh, db


def _rnn_tanh_of_input(dnext_h: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    x, prev_h, wx, wh, _next_h = cache
    a = x @ wx + prev_h @ wh
    da = dnext_h * (1 - a**2)  # 1 - a^2 of the pre-activation (without b) instead of 1 - tanh(a)^2
    return da @ wx.T, da @ wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def _rnn_dwh_skips_tanh(dnext_h: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    dx, dprev_h, dwx, _, db = rnn_step_backward(dnext_h, cache)
    return dx, dprev_h, dwx, cache[1].T @ dnext_h, db


def _rnn_dprev_h_uses_wx(dnext_h: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    _x, prev_h, _wx, wh, next_h = cache
    dx, _, dwx, dwh, db = rnn_step_backward(dnext_h, cache)
    da = dnext_h * (1 - next_h**2)
    return dx, (da @ wh).reshape(prev_h.shape), dwx, dwh, db  # Wh not transposed


def _rnn_db_mean(dnext_h: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    dx, dprev_h, dwx, dwh, _ = rnn_step_backward(dnext_h, cache)
    da = dnext_h * (1 - cache[4] ** 2)
    return dx, dprev_h, dwx, dwh, da.mean(axis=0)


RNN_STEP = Layer(
    name="rnn-step",
    title="one vanilla RNN step, next_h = tanh(x Wx + prev_h Wh + b)",
    inputs={"x": ("N", "D"), "prev_h": ("N", "H"), "wx": ("D", "H"), "wh": ("H", "H"), "b": ("H",)},
    sizes={"N": (1, 3), "D": (1, 3), "H": (1, 4)},
    forward=rnn_step_forward,
    backward=rnn_step_backward,
    reference=_rnn_reference,
    wrong={
        "1 - a^2 of the pre-activation instead of 1 - tanh(a)^2": Variant(_rnn_tanh_of_input, "x"),
        "dWh without tanh's derivative": Variant(_rnn_dwh_skips_tanh, "wh"),
        "dprev_h with Wh not transposed": Variant(_rnn_dprev_h_uses_wx, "prev_h"),
        "db averaged over the batch": Variant(_rnn_db_mean, "b"),
    },
    correct={"a mapping by name, einsum": Variant(_rnn_mapping), "one sample at a time": Variant(_rnn_per_sample)},
)

LAYERS = (RNN_STEP,)
