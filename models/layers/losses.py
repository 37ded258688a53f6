"""Losses as courses assign them: ``loss, dx = softmax_loss(x, y)`` returns the loss and its gradient at once.

In the layer convention the pair is ``forward -> (loss, cache=gradients)`` and ``backward(dout, grads) = dout *
grads``: the random upstream gradient is then a random scalar, which still catches every wrong gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradcheckers.backward import labels
from gradcheckers.layer import Layer, Variant


def _scaled(dout: Any, grads: Any) -> Any:
    """backward of a loss that returned its own gradients: the upstream (scalar) gradient times each."""
    return tuple(dout * g for g in grads) if isinstance(grads, tuple) else dout * grads


def _probabilities(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)  # exp of a large score overflows; a shift leaves softmax unchanged
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


# -- softmax cross-entropy, averaged over the batch -------------------------------------------------------------


def softmax_loss(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    n = x.shape[0]
    p = _probabilities(x)
    loss = -np.log(p[np.arange(n), y]).sum() / n
    dx = p.copy()
    dx[np.arange(n), y] -= 1
    return loss, dx / n


def _softmax_reference(x: Tensor, y: Tensor) -> Tensor:
    # log_softmax and a gather rather than F.cross_entropy, which runs 10x slower under the references' vmap.
    return -torch.log_softmax(x, dim=1).gather(1, y[:, None]).mean()


def _softmax_one_hot(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    n, c = x.shape
    log_p = x - x.max(axis=1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    one_hot = np.eye(c, dtype=x.dtype)[y]
    return -(one_hot * log_p).sum() / n, (np.exp(log_p) - one_hot) / n


def _softmax_loop(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    n = x.shape[0]
    loss, dx = 0.0, np.zeros_like(x)
    for i in range(n):
        s = x[i] - x[i].max()
        p = np.exp(s) / np.exp(s).sum()
        loss -= np.log(p[y[i]])
        p[y[i]] -= 1
        dx[i] = p / n
    return loss / n, dx


def _softmax_no_mean(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    loss, dx = softmax_loss(x, y)
    return loss, dx * x.shape[0]  # the loss averages, the gradient sums


def _softmax_no_one_hot(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    loss, _ = softmax_loss(x, y)
    return loss, _probabilities(x) / x.shape[0]


def _softmax_column_index(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    loss, _ = softmax_loss(x, y)
    dx = _probabilities(x)
    dx[:, y] -= 1  # every row gets every label's -1
    return loss, dx / x.shape[0]


SOFTMAX_LOSS = Layer(
    name="softmax-loss",
    title="softmax cross-entropy averaged over the batch: loss, dx = softmax_loss(x, y)",
    inputs={"x": ("N", "C"), "y": labels(("N",), "C")},
    sizes={"N": (1, 5), "C": (1, 5)},
    forward=softmax_loss,
    backward=_scaled,
    functions=("softmax_loss", None),  # the gate calls the course's loss, which returns its own gradient
    reference=_softmax_reference,
    wrong={
        "dx summed where the loss averages": Variant(_scaled, "x", _softmax_no_mean),
        "the one-hot labels not subtracted": Variant(_scaled, "x", _softmax_no_one_hot),
        "dx[:, y] -= 1 instead of dx[range(N), y]": Variant(_scaled, "x", _softmax_column_index),
    },
    correct={"log-softmax and one-hot": Variant(_scaled, None, _softmax_one_hot),
             "a loop over samples": Variant(_scaled, None, _softmax_loop)},
)

# -- multiclass SVM hinge loss (margin 1), averaged over the batch ---------------------------------------------


def svm_loss(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    n = x.shape[0]
    rows = np.arange(n)
    margins = np.maximum(0, x - x[rows, y][:, None] + 1.0)
    margins[rows, y] = 0
    positive = (margins > 0).astype(x.dtype)
    dx = positive.copy()
    dx[rows, y] -= positive.sum(axis=1)  # the correct class loses one for every violating class
    return margins.sum() / n, dx / n


def _svm_reference(x: Tensor, y: Tensor) -> Tensor:
    n = x.shape[0]
    correct = x[torch.arange(n), y][:, None]
    margins = torch.relu(x - correct + 1.0)
    margins = margins * (1 - torch.nn.functional.one_hot(y, x.shape[1]).to(x.dtype))
    return margins.sum() / n


def _svm_loop(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    n, c = x.shape
    loss, dx = 0.0, np.zeros_like(x)
    for i in range(n):
        for j in range(c):
            if j == y[i]:
                continue
            margin = x[i, j] - x[i, y[i]] + 1
            if margin > 0:
                loss += margin
                dx[i, j] += 1 / n
                dx[i, y[i]] -= 1 / n
    return loss / n, dx


def _svm_one_hot(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    n, c = x.shape
    one_hot = np.eye(c, dtype=bool)[y]
    margins = np.where(one_hot, 0.0, np.maximum(0, x - (x * one_hot).sum(axis=1, keepdims=True) + 1))
    active = (margins > 0).astype(x.dtype)
    return margins.sum() / n, (active - one_hot * active.sum(axis=1, keepdims=True)) / n


def _svm_minus_one(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    loss, dx = svm_loss(x, y)
    n = x.shape[0]
    dx[np.arange(n), y] = np.where(dx[np.arange(n), y] < 0, -1.0 / n, 0.0)  # -1 however many classes violate
    return loss, dx


def _svm_sign_flipped(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    loss, dx = svm_loss(x, y)
    n = x.shape[0]
    dx[np.arange(n), y] *= -1
    return loss, dx


def _svm_no_mean(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    loss, dx = svm_loss(x, y)
    return loss, dx * x.shape[0]


SVM_LOSS = Layer(
    name="svm-loss",
    title="multiclass SVM hinge loss (margin 1) averaged over the batch: loss, dx = svm_loss(x, y)",
    inputs={"x": ("N", "C"), "y": labels(("N",), "C")},
    sizes={"N": (1, 5), "C": (1, 5)},
    forward=svm_loss,
    backward=_scaled,
    functions=("svm_loss", None),  # the gate calls the course's loss, which returns its own gradient
    reference=_svm_reference,
    wrong={
        "the correct class gets -1, not minus the number of violations": Variant(_scaled, "x", _svm_minus_one),
        "the correct class's sign flipped": Variant(_scaled, "x", _svm_sign_flipped),
        "dx summed where the loss averages": Variant(_scaled, "x", _svm_no_mean),
    },
    correct={"two loops": Variant(_scaled, None, _svm_loop), "one-hot masks": Variant(_scaled, None, _svm_one_hot)},
)

# -- word2vec, naive softmax: loss = -log softmax(U v)[o] ---------------------------------------------------------


def naive_softmax_loss_and_gradient(center: np.ndarray, outside_idx: np.ndarray, outside_vectors: np.ndarray
                                    ) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """cs224n's convention: (loss, (grad of the center word vector, grad of the outside vectors))."""
    scores = outside_vectors @ center
    p = np.exp(scores - scores.max())
    p /= p.sum()
    loss = -np.log(p[outside_idx])
    delta = p.copy()
    delta[outside_idx] -= 1  # y_hat - y
    return float(loss), (outside_vectors.T @ delta, np.outer(delta, center))


def _word2vec_reference(center: Tensor, outside_idx: Tensor, outside_vectors: Tensor) -> Tensor:
    return -torch.log_softmax(outside_vectors @ center, dim=0)[outside_idx].reshape(())


def _word2vec_einsum(center: np.ndarray, o: np.ndarray, u: np.ndarray) -> tuple[float, tuple[np.ndarray, ...]]:
    scores = np.einsum("vd,d->v", u, center)
    log_p = scores - scores.max() - np.log(np.exp(scores - scores.max()).sum())
    y = np.zeros_like(scores)
    y[o] = 1
    delta = np.exp(log_p) - y
    return float(-log_p[o]), (np.einsum("vd,v->d", u, delta), np.einsum("v,d->vd", delta, center))


def _word2vec_split(center: np.ndarray, o: np.ndarray, u: np.ndarray) -> tuple[float, tuple[np.ndarray, ...]]:
    scores = u @ center
    p = np.exp(scores - scores.max())
    p /= p.sum()
    grad_center = -u[o] + p @ u  # -u_o + sum_w p_w u_w
    grad_outside = p[:, None] * center[None, :]
    grad_outside[o] -= center
    return float(-np.log(p[o])), (grad_center, grad_outside)


def _w2v_center_no_y(center: np.ndarray, o: np.ndarray, u: np.ndarray) -> tuple[float, tuple[np.ndarray, ...]]:
    loss, (_gc, go) = naive_softmax_loss_and_gradient(center, o, u)
    scores = u @ center
    p = np.exp(scores - scores.max())
    return loss, (u.T @ (p / p.sum()), go)


def _w2v_outside_transposed(center: np.ndarray, o: np.ndarray, u: np.ndarray) -> tuple[float, tuple[np.ndarray, ...]]:
    loss, (gc, go) = naive_softmax_loss_and_gradient(center, o, u)
    return loss, (gc, go.T.reshape(go.shape))


def _w2v_center_only_true_word(center: np.ndarray, o: np.ndarray, u: np.ndarray
                               ) -> tuple[float, tuple[np.ndarray, ...]]:
    loss, (_gc, go) = naive_softmax_loss_and_gradient(center, o, u)
    return loss, (-u[o], go)


def _w2v_outside_sign(center: np.ndarray, o: np.ndarray, u: np.ndarray) -> tuple[float, tuple[np.ndarray, ...]]:
    loss, (gc, go) = naive_softmax_loss_and_gradient(center, o, u)
    return loss, (gc, -go)


WORD2VEC = Layer(
    name="word2vec-naive-softmax",
    title="word2vec skip-gram, naive softmax: loss = -log softmax(U v_c)[o] and its gradients in v_c and U",
    inputs={"center": ("D",), "outside_idx": labels((), "V"), "outside_vectors": ("V", "D")},
    sizes={"D": (1, 4), "V": (1, 5)},
    forward=naive_softmax_loss_and_gradient,
    backward=_scaled,
    functions=("naive_softmax_loss_and_gradient", None),  # the course's loss, returning its own gradients
    reference=_word2vec_reference,
    wrong={
        "the center gradient without - y": Variant(_scaled, "center", _w2v_center_no_y),
        "the center gradient from the true word alone": Variant(_scaled, "center", _w2v_center_only_true_word),
        "the outside gradient's values transposed": Variant(_scaled, "outside_vectors", _w2v_outside_transposed),
        "the outside gradient's sign flipped": Variant(_scaled, "outside_vectors", _w2v_outside_sign),
    },
    correct={"einsum and log-softmax": Variant(_scaled, None, _word2vec_einsum),
             "split into the true word and the expectation": Variant(_scaled, None, _word2vec_split)},
)

LAYERS = (SOFTMAX_LOSS, SVM_LOSS, WORD2VEC)
