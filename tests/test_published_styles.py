"""Backward passes written as published code writes them, each checked with at most five lines of ours (issue 11:
a held-out corpus of such code will be checked the same way). Two carry the bugs found in published code."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gradcheckers.models.layers import LAYERS

from gradcheckers import check_backward

# --- a textbook network with column vectors: backprop returns (nabla_b, nabla_w) lists ----------------------------


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class Network:
    """Weights (n_out, n_in), biases (n_out, 1), one input a column vector x (n_in, 1), quadratic cost."""

    def __init__(self, weights: list[np.ndarray], biases: list[np.ndarray]) -> None:
        self.weights, self.biases = weights, biases

    def feedforward(self, a: np.ndarray) -> np.ndarray:
        for b, w in zip(self.biases, self.weights):
            a = sigmoid(w @ a + b)
        return a

    def backprop(self, x: np.ndarray, y: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        activations, zs = [x], []
        for b, w in zip(self.biases, self.weights):
            zs.append(w @ activations[-1] + b)
            activations.append(sigmoid(zs[-1]))
        delta = (activations[-1] - y) * sigmoid(zs[-1]) * (1 - sigmoid(zs[-1]))
        nabla_b, nabla_w = [delta], [delta @ activations[-2].T]
        for layer in range(2, len(self.weights) + 1):
            s = sigmoid(zs[-layer])
            delta = (self.weights[-layer + 1].T @ delta) * s * (1 - s)
            nabla_b.insert(0, delta)
            nabla_w.insert(0, delta @ activations[-layer - 1].T)
        return nabla_b, nabla_w


def test_a_textbook_column_vector_network() -> None:
    def cost(x: Any, y: Any, w1: Any, b1: Any, w2: Any, b2: Any) -> tuple[Any, Any]:
        net = Network([w1, w2], [b1, b2])
        return 0.5 * ((net.feedforward(x) - y) ** 2).sum(), net.backprop(x, y)
    shapes = {"x": ("I", "one"), "y": ("O", "one"), "w1": ("H", "I"), "b1": ("H", "one"), "w2": ("O", "H"),
              "b2": ("O", "one")}
    result = check_backward(cost, lambda d, g: [d * g[1][0], d * g[0][0], d * g[1][1], d * g[0][1]], shapes,
                            wrt=["w1", "b1", "w2", "b2"], sizes={"one": 1}, max_examples=30)
    assert result.passed, result.message


# --- a class-based layer that keeps its cache on itself and its parameter gradients as attributes -----------------


class Dense:
    def __init__(self, w: np.ndarray, b: np.ndarray) -> None:
        self.w, self.b = w, b

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.w + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dw, self.db = self.x.T @ dout, dout.sum(axis=0)
        return dout @ self.w.T


def test_a_class_based_layer_with_its_state_on_itself() -> None:
    def forward(x: Any, w: Any, b: Any) -> tuple[Any, Dense]:
        layer = Dense(w, b)
        return layer.forward(x), layer
    result = check_backward(forward, lambda dout, layer: (layer.backward(dout), layer.dw, layer.db),
                            {"x": ("N", "D"), "w": ("D", "M"), "b": ("M",)}, max_examples=30)
    assert result.passed, result.message


# --- a course's convolution taking its hyperparameters as a dict ----------------------------------------------------


def test_a_convolution_with_a_conv_param_dict_through_the_bundled_layer() -> None:
    from gradcheckers.models.layers.spatial import conv_backward, conv_forward

    def conv_forward_naive(x: Any, w: Any, b: Any, conv_param: dict[str, int]) -> Any:
        return conv_forward(x, w, b, conv_param["stride"], conv_param["pad"])

    result = LAYERS["conv"].check(lambda x, w, b, stride, pad: conv_forward_naive(x, w, b, {"stride": stride,
                                  "pad": pad}), conv_backward, max_examples=6)
    assert result.passed, result.message


# --- published bugs: a GELU whose grad is not its fn's derivative, a max-pool window ignoring the pool size --------


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))  # the tanh approximation


def gelu_grad(x: np.ndarray) -> np.ndarray:
    # The exact GELU's derivative (erf form), paired with the tanh approximation's forward: close, not equal.

    cdf = 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    return cdf + x * np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


def test_a_gelu_whose_grad_is_not_the_derivative_of_its_fn_is_caught() -> None:
    result = check_backward(lambda x: (gelu(x), x), lambda dout, x: dout * gelu_grad(x), {"x": ("N",)},
                            max_examples=30)
    assert not result.passed and result.parameters == ("x",)
    assert result.counterexample is not None and result.counterexample.sizes.N == 1


def test_a_max_pool_whose_window_ignores_the_pool_size_is_caught_with_pool_and_stride_named() -> None:
    def forward(x: Any, pool: int, stride: int) -> tuple[Any, Any]:
        n, c, h, w = x.shape
        ho, wo = 1 + (h - pool) // stride, 1 + (w - pool) // stride
        out = np.empty((n, c, ho, wo))
        for i in range(ho):
            for j in range(wo):  # the window is stride x stride: the published bug
                rows, cols = slice(i * stride, (i + 1) * stride), slice(j * stride, (j + 1) * stride)
                out[:, :, i, j] = x[:, :, rows, cols].max(axis=(2, 3))
        return out, (x, pool, stride)

    from gradcheckers.models.layers.spatial import maxpool_backward

    result = LAYERS["maxpool"].check(forward, maxpool_backward, max_examples=20)
    assert not result.passed and result.parameters[0] == "forward"
    case = result.counterexample
    assert case is not None and case.sizes.pool != case.sizes.stride
