"""The classic two-layer classifier assignment: a ReLU hidden layer and a softmax cross-entropy head.

Forward pass (math convention, rows are samples; the two-layer net of CS231n's second assignment)::

    H  = X @ W1 + b1          X: (batch, n_feature)  W1: (n_feature, n_hidden)  b1: (n_hidden,)
    Hs = relu(H)              (``make_assignment("sigmoid")`` gives the smooth variant)
    S  = Hs @ W2 + b2         W2: (n_hidden, n_output)  b2: (n_output,); n_output is the number of classes
    f  = sum_i -log softmax(S_i)[y_i]      y: (batch,) int64 labels in [0, n_output)

ReLU is the default because it is what the classic assignment uses and because its kink is what the
checker must not blame on a student (see :mod:`gradcheckers.kinks`). The loss *sums* over the samples, as
the seed's does, so that a forgotten sum over the batch and a spurious mean are both wrong. A softmax over
one class is the constant 1 (f = 0, every gradient 0): the assignment asks for ``n_output >= 2`` through
``min_sizes``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from gradcheckers.models.two_layer import ACTIVATIONS, backward_rounding
from torch import Tensor
from torch.nn import functional

from gradcheckers.assignment import Assignment, Sizes

__all__ = ["SOFTMAX_CLASSIFIER", "SOFTMAX_SIGMOID", "gradients", "loss", "make_assignment", "rounding_magnitudes"]

INPUTS = ("X", "y")
PARAMETERS = ("W1", "b1", "W2", "b2")


def scores(X: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor, activation: str = "relu") -> tuple[Tensor, ...]:
    """The forward pass: ``(H, Hs, S)``."""
    H = X @ W1 + b1
    Hs = ACTIVATIONS[activation].forward(H)
    return H, Hs, Hs @ W2 + b2


def loss(X: Tensor, y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor, activation: str = "relu") -> Tensor:
    """f = sum over the batch of the softmax cross-entropy of the scores against the integer labels."""
    return functional.cross_entropy(scores(X, W1, b1, W2, b2, activation)[2], y, reduction="sum")


def gradients(
    X: Tensor, y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor, activation: str = "relu"
) -> dict[str, Tensor]:
    """The correct gradients, next to the forward formulas they differentiate.

    f_i = logsumexp(S_i) - S_i[y_i]       =>  df/dS  = G = softmax(S) - onehot(y)   (one row per sample)
    S = Hs W2 + b2                        =>  df/dW2 = Hs^T G,  df/db2 = G summed over the batch
    Hs = act(H)                           =>  df/dH  = (G W2^T) * act'(H)    (relu' = [H > 0])
    H = X W1 + b1                         =>  df/dW1 = X^T df/dH,  df/db1 = df/dH summed over the batch
    """
    H, Hs, S = scores(X, W1, b1, W2, b2, activation)
    G = torch.softmax(S, dim=1) - functional.one_hot(y, S.shape[1]).to(S.dtype)
    dH = (G @ W2.T) * ACTIVATIONS[activation].derivative(H, Hs)
    return {"W1": X.T @ dH, "b1": dH.sum(0), "W2": Hs.T @ G, "b2": G.sum(0)}


def rounding_magnitudes(
    X: Tensor, y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor, activation: str = "relu"
) -> dict[str, Tensor]:
    """For each gradient entry, how far a correct floating-point computation may be off, in units of u.

    The first-order analysis of ``models.two_layer.rounding_magnitudes`` (a sum of m terms is off by about
    m u sum|terms|, products add relative errors), with the softmax in the middle. exp(z) has relative error
    |dz| + 2 ulps, and z = S - max(S) (or S itself, for a formula that skips the shift: the bound uses |S|,
    which covers both) is off by d_S + |S|. Each P = e / sum(e) inherits its own exponential's error, the
    largest one of the row (through the sum) and n_output + 2 roundings of the sum and the division; G = P -
    onehot adds |G|. The result does not depend on the order of any sum.
    """
    f = X.shape[1]
    h, o = W2.shape
    act = ACTIVATIONS[activation]
    H, Hs, S = scores(X, W1, b1, W2, b2, activation)
    d_act = act.derivative(H, Hs).abs()
    P = torch.softmax(S, dim=1)
    G = P - functional.one_hot(y, o).to(S.dtype)
    W2a = W2.abs()

    d_H = (f + 2) * (X.abs() @ W1.abs() + b1.abs())
    # act(H) moves by act' times the error of H, plus its own few ulps; relu is 1-Lipschitz, and near its kink
    # the error of H moves Hs even where relu'(H) = 0.
    d_Hs = (d_act if act.smooth else 1.0) * d_H + 2 * Hs.abs()
    d_S = (h + 2) * (Hs.abs() @ W2a + b2.abs()) + d_Hs @ W2a
    r = d_S + S.abs() + 2  # relative error of each exponential
    d_P = P * (r + 2 * r.amax(1, keepdim=True) + o + 2)
    G_a = G.abs()
    d_G = d_P + G_a
    return backward_rounding(X, Hs, W2a, G_a, d_G, d_H, d_Hs, d_act, act.smooth)


# Step multipliers of the central differences: (+s, -s) for the estimate, (+2s, -2s) for its error.
_STEPS = (1.0, -1.0, 2.0, -2.0)
_U64 = 2.0**-53


def finite_differences(
    args: Mapping[str, Tensor], activation: str = "relu", step: float = 1e-5, chunk_elements: int = 1 << 20
) -> dict[str, tuple[Tensor, Tensor]]:
    """Central differences of f for every parameter element at once, each with an error estimate, in float64.

    As ``models.two_layer.finite_differences`` does for the squared loss: each perturbation changes the scores
    by a known dS without a new forward pass, and the loss by sum_i log(sum_k P_ik exp(dS_ik)) - dS_i,y_i,
    computed as log1p(sum_k P_ik expm1(dS_ik)) while |dS| <= 1. No two nearly equal losses are subtracted, so
    the differences keep their accuracy where the loss is a small difference of large terms (a confident
    model). Moving b2_k or W2_jk by t changes one column of scores, by t or t Hs[:, j]; then the change is
    log1p(P_ik expm1(dS_ik)), or logaddexp(log P_ik + dS_ik, log(1 - P_ik)) for large steps. Moving b1_j or
    W1_fj changes hidden unit j by dA = act(H_j + t x) - act(H_j) and the scores by the rank-one dA W2[j, :].

    Steps, Richardson's extrapolation and the error estimate are those of ``gradcheckers.references``; the
    rounding part bounds each change of the loss from the errors of dS (u |dS|, and u (|Hs| + |act(H + t x)| +
    |H + t x|) for a recomputed activation), of P (u (|S| + n_output + 4) relative) and of the sum.
    """
    X = args["X"].double()
    y = args["y"]
    W1, b1, W2, b2 = (args[name].detach().double() for name in PARAMETERS)
    act = ACTIVATIONS[activation].forward
    n, f = X.shape
    h, o = W2.shape
    u = _U64
    mult = torch.tensor(_STEPS, dtype=torch.float64, device=X.device)
    H = X @ W1 + b1
    A = act(H)
    S = A @ W2 + b2
    logP = torch.log_softmax(S, dim=1)
    P = logP.exp()
    Yh = functional.one_hot(y, o).to(S.dtype)
    G = (P - Yh).abs()
    rowscale = S.abs().amax(1) + o + 4  # (n,): relative error of P, in units of u
    # log(1 - P_ik) = log sum_{k' != k} P_ik', without the cancellation of 1 - P near P = 1.
    others = torch.where(torch.eye(o, dtype=torch.bool, device=X.device), -math.inf, 0.0)
    log_rest = torch.logsumexp(logP[:, None, :] + others, -1)  # (n, o)

    def combine(dL: Tensor, err: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        d1 = (dL[0] - dL[1]) / (2 * s)
        d2 = (dL[2] - dL[3]) / (4 * s)
        # (4 D(s) - D(2s)) / 3 is off by at most 1.5 E / s for changes off by E; 4 E / s leaves a margin.
        return (4 * d1 - d2) / 3, (d1 - d2).abs() / 3 + 4 * err.amax(0) / s

    def column_change(dS: Tensor, k_first: bool) -> tuple[Tensor, Tensor]:
        """dS (..., o_k, n): the change of column k of the scores, per sample. Loss change and its error."""
        Pk, logPk, restk, Yk, Gk = (t.T for t in (P, logP, log_rest, Yh, G))  # (o, n)
        small = dS.abs() <= 1
        value = torch.log1p(Pk * torch.expm1(dS.clamp(max=1)))
        err = u * (2 * Gk * dS.abs() + rowscale * (Pk + Yk) * dS.abs())
        if not bool(small.all()):
            steep = torch.logaddexp(logPk + dS, restk)
            value = torch.where(small, value, steep)
            err = err + torch.where(small, 0.0, u * ((logPk + dS).abs() + restk.abs() + 2))
        per_sample = value - dS * Yk
        return per_sample.sum(-1), (err + u * (n + 2) * per_sample.abs()).sum(-1)

    out: dict[str, tuple[Tensor, Tensor]] = {}
    # b2_k: column k of the scores moves by t on every row.                 (4, o, n)
    s = step * b2.abs().clamp(min=1)
    dS = (mult[:, None] * s)[..., None].expand(4, o, n)
    out["b2"] = combine(*column_change(dS, True), s)
    # W2_jk: column k moves by t A[:, j].                                     (4, h, o, n)
    s = step * W2.abs().clamp(min=1)
    dS = (mult[:, None, None] * s)[..., None] * A.T[None, :, None, :]
    out["W2"] = combine(*column_change(dS, True), s)

    # Hidden units: the scores move by dA (x) W2[j, :]. With q = |G| |W2|^T and r = (P + onehot) |W2|^T, the
    # error terms need no class axis; only the value sums over the classes.
    W2a = W2.abs()
    q, r = G @ W2a.T, (P + Yh) @ W2a.T  # (n, h)
    W2y = W2[:, y].T  # (n, h): W2[j, y_i]

    def hidden_change(dA: Tensor, d_dA: Tensor, j: slice) -> tuple[Tensor, Tensor]:
        """dA (..., J, n) for hidden units j. Loss change and its error, both (..., J)."""
        dS = dA[..., None] * W2[j][:, None, :]  # (..., J, n, o)
        small = dS.abs().amax(-1) <= 1
        value = torch.log1p((P * torch.expm1(dS.clamp(max=1))).sum(-1))
        if not bool(small.all()):
            value = torch.where(small, value, torch.logsumexp(logP + dS, -1))
            steep_err = torch.where(small, 0.0, u * ((logP + dS).abs().amax(-1) + o))
        else:
            steep_err = torch.zeros_like(value)
        per_sample = value - dA * W2y.T[j]
        err = d_dA * q.T[j] + u * (rowscale * r.T[j] + 2 * q.T[j]) * dA.abs() + steep_err
        return per_sample.sum(-1), (err + u * (n + 2) * per_sample.abs()).sum(-1)

    def unit_moves(moved: Tensor, base: Tensor) -> tuple[Tensor, Tensor]:
        after = act(moved)
        return after - base, u * (base.abs() + after.abs() + moved.abs())

    # b1_j                                                                     (4, h, n)
    s = step * b1.abs().clamp(min=1)
    moved = H.T[None] + (mult[:, None] * s)[..., None]
    out["b1"] = combine(*hidden_change(*unit_moves(moved, A.T[None]), slice(None)), s)
    # W1_fj, in chunks of hidden units                                         (4, f, J, n)
    s_all = step * W1.abs().clamp(min=1)
    grad = torch.empty_like(W1)
    err = torch.empty_like(W1)
    width = max(1, chunk_elements // (4 * f * n * o))
    for lo in range(0, h, width):
        j = slice(lo, min(h, lo + width))
        s = s_all[:, j]
        moved = H.T[j][None, None] + (mult[:, None, None] * s)[..., None] * X.T[None, :, None, :]
        grad[:, j], err[:, j] = combine(*hidden_change(*unit_moves(moved, A.T[j][None, None]), j), s)
    out["W1"] = (grad, err)
    return out


def draw(sizes: Sizes, generator: torch.Generator, scale: float = 1.0) -> dict[str, Tensor]:
    """Standard-normal data, weights scaled as in ``models.two_layer.draw`` (pre-activations around +-2, so
    about half the ReLUs are active), and uniform labels. ``scale`` multiplies every float tensor, never the
    labels: at the stress scales the scores reach 1e6, where exp(S) without the max shift overflows."""
    n, f, h, o = sizes.batch, sizes.n_feature, sizes.n_hidden, sizes.n_output

    def normal(*shape: int, std: float = 1.0) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64) * (std * scale)

    return {
        "X": normal(n, f),
        "y": torch.randint(0, o, (n,), generator=generator, dtype=torch.int64),
        "W1": normal(f, h, std=2.0 / math.sqrt(f)),
        "b1": normal(h),
        "W2": normal(h, o, std=2.0 / math.sqrt(h)),
        "b2": normal(o),
    }


def shapes(sizes: Sizes) -> dict[str, tuple[int, ...]]:
    n, f, h, o = sizes.batch, sizes.n_feature, sizes.n_hidden, sizes.n_output
    return {"X": (n, f), "y": (n,), "W1": (f, h), "b1": (h,), "W2": (h, o), "b2": (o,)}


def make_assignment(activation: str = "relu") -> Assignment:
    """The softmax classifier as an :class:`~gradcheckers.assignment.Assignment`, with a relu or smooth hidden
    layer. Autograd is the generic oracle of :mod:`gradcheckers.references`; the finite differences are the
    structure-aware :func:`finite_differences`."""
    act = ACTIVATIONS[activation]

    def _loss(X: Tensor, y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
        return loss(X, y, W1, b1, W2, b2, activation)

    def _reference(X: Tensor, y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> dict[str, Tensor]:
        return gradients(X, y, W1, b1, W2, b2, activation)

    def _rounding(args: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return rounding_magnitudes(**args, activation=activation)

    def _kinks(args: Mapping[str, Tensor]) -> Tensor:
        return args["X"] @ args["W1"] + args["b1"]

    def _fd(args: Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        return finite_differences(args, activation)

    return Assignment(
        name="softmax-classifier" if activation == "relu" else f"softmax-classifier-{activation}",
        title=f"Two-layer classifier, {activation} hidden layer, f = sum of softmax cross-entropies",
        inputs=INPUTS,
        parameters=PARAMETERS,
        shapes=shapes,
        draw=draw,
        loss=_loss,
        reference=_reference,
        finite_differences=_fd,
        rounding=_rounding,
        smooth=act.smooth,
        # exp and log are analytic, but cross_entropy has no complex kernel: the complex step cannot run it.
        holomorphic=False,
        min_sizes={"n_output": 2},
        kinks=None if act.smooth else _kinks,
    )


SOFTMAX_CLASSIFIER = make_assignment("relu")
SOFTMAX_SIGMOID = make_assignment("sigmoid")
