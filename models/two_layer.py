"""The seed assignment: a two-layer network in the course's math convention, and its gradients.

Forward pass (math convention, rows are samples)::

    H      = X @ W1 + b1        X: (batch, n_feature)  W1: (n_feature, n_hidden)  b1: (n_hidden,)
    Hs     = act(H)             act = sigmoid in the seed; tanh and relu are variants
    Y_pred = Hs @ W2 + b2       W2: (n_hidden, n_output)  b2: (n_output,)
    f      = ||Y - Y_pred||_F^2 (sum of squares; the "mean" variant divides by batch * n_output)

``nn.Linear`` stores ``weight`` as (out_features, in_features) and computes ``X @ weight.T + bias``, so
``W1 = linear1.weight.T``: :func:`state_dict_from_math` and :func:`math_from_module` are the only two places
that know it.

Each gradient formula sits next to the forward formula it differentiates, in the manner of micrograd.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradcheckers.assignment import Assignment, Sizes
from gradcheckers.scratch import scratch

__all__ = [
    "ACTIVATIONS",
    "PARAMETERS",
    "Activation",
    "TwoLayerNet",
    "forward",
    "grad_W1",
    "grad_W2",
    "grad_b1",
    "grad_b2",
    "gradients",
    "loss",
    "math_from_module",
    "state_dict_from_math",
]

PARAMETERS = ("W1", "b1", "W2", "b2")


@dataclass(frozen=True)
class Activation:
    """An elementwise activation with its derivative written from the activation's *output*.

    ``derivative(h, a)`` receives both the pre-activation ``h`` and ``a = forward(h)``: sigmoid and tanh are
    cheapest and stable from ``a`` (sigma' = a(1 - a) never overflows, unlike exp(h) / (1 + exp(h))**2), relu
    needs ``h``. ``smooth`` is False where the function has kinks, which finite differences cannot cross.
    """

    name: str
    forward: Callable[[Tensor], Tensor]
    derivative: Callable[[Tensor, Tensor], Tensor]
    module: Callable[[], nn.Module]
    smooth: bool = True


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation("sigmoid", torch.sigmoid, lambda h, a: a * (1 - a), nn.Sigmoid),
    "tanh": Activation("tanh", torch.tanh, lambda h, a: 1 - a * a, nn.Tanh),
    "relu": Activation("relu", torch.relu, lambda h, a: (h > 0).to(h.dtype), nn.ReLU, smooth=False),
}


class TwoLayerNet(nn.Module):
    """The seed's network: ``linear1 -> activation -> linear2``, both layers with bias."""

    def __init__(self, n_feature: int, n_hidden: int, n_output: int, activation: str = "sigmoid") -> None:
        super().__init__()
        self.linear1 = nn.Linear(n_feature, n_hidden, bias=True)
        self.activation = ACTIVATIONS[activation].module()
        self.linear2 = nn.Linear(n_hidden, n_output, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.activation(self.linear1(x)))


def state_dict_from_math(W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> dict[str, Tensor]:
    """The course's (W1, b1, W2, b2) as a ``TwoLayerNet`` state dict (``nn.Linear.weight`` is the transpose)."""
    return {"linear1.weight": W1.T, "linear1.bias": b1, "linear2.weight": W2.T, "linear2.bias": b2}


def math_from_module(net: TwoLayerNet) -> dict[str, Tensor]:
    """The inverse of :func:`state_dict_from_math`: a network's parameters in the course's convention."""
    return {
        "W1": net.linear1.weight.T,
        "b1": net.linear1.bias,
        "W2": net.linear2.weight.T,
        "b2": net.linear2.bias,
    }


def forward(
    X: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor, activation: str = "sigmoid"
) -> tuple[Tensor, Tensor, Tensor]:
    """The forward pass in the math convention: returns ``(H, Hs, Y_pred)``."""
    H = X @ W1 + b1
    Hs = ACTIVATIONS[activation].forward(H)
    return H, Hs, Hs @ W2 + b2


def loss(Y: Tensor, Y_pred: Tensor, reduction: str = "sum") -> Tensor:
    """f = ||Y - Y_pred||_F^2; ``reduction="mean"`` divides by the number of entries (``MSELoss``'s default)."""
    f = ((Y - Y_pred) ** 2).sum()
    return f / Y.numel() if reduction == "mean" else f


def gradients(
    X: Tensor,
    Y: Tensor,
    W1: Tensor,
    b1: Tensor,
    W2: Tensor,
    b2: Tensor,
    activation: str = "sigmoid",
    reduction: str = "sum",
) -> dict[str, Tensor]:
    """The correct gradients of f for every batch size and width, next to the forward formulas.

    df = tr(G^T dY_pred) with G = df/dY_pred = -2 (Y - Y_pred) (times 1/(batch*n_output) for the mean).
    Y_pred = Hs W2 + b2      =>  df/dW2 = Hs^T G,   df/db2 = sum over the batch of G's rows
    Hs = act(H)              =>  df/dH  = (G W2^T) * act'(H)          (elementwise)
    H = X W1 + b1            =>  df/dW1 = X^T df/dH, df/db1 = sum over the batch of df/dH's rows
    The bias gradients sum over the batch because b is broadcast to every row: the seed forgot this.
    """
    H, Hs, Y_pred = forward(X, W1, b1, W2, b2, activation)
    G = -2 * (Y - Y_pred)
    if reduction == "mean":
        G = G / Y.numel()
    dH = (G @ W2.T) * ACTIVATIONS[activation].derivative(H, Hs)
    return {"W1": X.T @ dH, "b1": dH.sum(0), "W2": Hs.T @ G, "b2": G.sum(0)}


# The submission convention: one function per parameter, each taking (X, Y, W1, b1, W2, b2).
def grad_W1(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    return gradients(X, Y, W1, b1, W2, b2)["W1"]


def grad_b1(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    return gradients(X, Y, W1, b1, W2, b2)["b1"]


def grad_W2(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    return gradients(X, Y, W1, b1, W2, b2)["W2"]


def grad_b2(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    return gradients(X, Y, W1, b1, W2, b2)["b2"]


def rounding_magnitudes(
    X: Tensor,
    Y: Tensor,
    W1: Tensor,
    b1: Tensor,
    W2: Tensor,
    b2: Tensor,
    activation: str = "sigmoid",
    reduction: str = "sum",
) -> dict[str, Tensor]:
    """For each gradient entry, how far a *correct* float computation of it may be off, in units of u.

    A first-order rounding-error analysis of the forward and backward pass (Higham, Accuracy and Stability of
    Numerical Algorithms, 2nd ed., ch. 3): a sum of n terms computed in floating point is off by at most about
    n * u * sum|terms|, a product adds the relative errors of its factors, and act(H) inherits |act'(H)| times
    the error of H. Each ``d_*`` below is the absolute error of an intermediate in units of the unit roundoff u,
    computed from absolute values so that no cancellation hides the size of the terms (the residual Y - Y_pred
    cancels when the fit is good; sigma(1 - sigma) cancels when sigma is near 1). The result does not depend
    on the order in which a formula sums, so it holds for einsum, loops and numpy alike.
    """
    f = X.shape[1]
    act = ACTIVATIONS[activation]
    W2a = W2.abs()
    H = X @ W1 + b1
    Hs = act.forward(H)
    d_act = act.derivative(H, Hs).abs()
    s = 2.0 / Y.numel() if reduction == "mean" else 2.0
    G = s * (Y - (Hs @ W2 + b2))

    d_H = (f + 2) * (X.abs() @ W1.abs() + b1.abs())
    d_Hs = d_act * d_H + 2 * Hs.abs()  # act(H) moves by act' * error of H, plus its own few ulps
    if not act.smooth:  # relu is 1-Lipschitz: near its kink H's error moves Hs even where relu'(H) = 0
        d_Hs = d_H + 2 * Hs.abs()
    d_G = s * ((W2.shape[0] + 2) * (Y.abs() + Hs.abs() @ W2a + b2.abs()) + d_Hs @ W2a)
    return backward_rounding(X, Hs, W2a, G.abs(), d_G, d_H, d_Hs, d_act, act.smooth)


def backward_rounding(
    X: Tensor,
    Hs: Tensor,
    W2a: Tensor,
    G_a: Tensor,
    d_G: Tensor,
    d_H: Tensor,
    d_Hs: Tensor,
    d_act: Tensor,
    smooth: bool,
) -> dict[str, Tensor]:
    """The backward half of the rounding analysis, shared by every head on this hidden layer (squared loss
    here, softmax in ``models.softmax``): given |G| = |df/dY_pred| and its error d_G (units of u), the errors
    of the four gradients. The analysis itself is described in :func:`rounding_magnitudes`."""
    n, o = X.shape[0], W2a.shape[1]
    dHs_a = G_a @ W2a.T
    d_dHs = d_G @ W2a.T + (o + 1) * dHs_a
    # act'(H) is off by what H's error moves it (|d log act'/dH| <= 2 for sigmoid and tanh) and, written as
    # a * (1 - a) or 1 - a^2, by twice the error of a: near saturation that absolute error dominates.
    # relu' is exactly 0 or 1 away from the kink (near it, see gradcheckers.kinks).
    d_deriv = 2 * d_Hs + d_act * (2 * d_H + 4) if smooth else torch.zeros_like(d_act)
    d_dH = d_dHs * d_act + dHs_a * d_deriv
    dH_a = dHs_a * d_act
    Xa, Hs_a = X.abs(), Hs.abs()
    return {
        "W1": Xa.T @ d_dH + (n + 1) * (Xa.T @ dH_a),
        "b1": d_dH.sum(0) + (n + 1) * dH_a.sum(0),
        "W2": Hs_a.T @ d_G + d_Hs.T @ G_a + (n + 1) * (Hs_a.T @ G_a),
        "b2": d_G.sum(0) + (n + 1) * G_a.sum(0),
    }


def parameter_shapes(n_feature: int, n_hidden: int, n_output: int) -> dict[str, tuple[int, ...]]:
    """The exact shape of each parameter (and so of its gradient)."""
    return {"W1": (n_feature, n_hidden), "b1": (n_hidden,), "W2": (n_hidden, n_output), "b2": (n_output,)}


def init_scale(fan_in: int) -> float:
    """nn.Linear's default init bound, 1/sqrt(fan_in)."""
    return 1.0 / math.sqrt(fan_in)


def autograd_gradients(
    X: Tensor,
    Y: Tensor,
    params: Mapping[str, Tensor],
    activation: str = "sigmoid",
    reduction: str = "sum",
) -> dict[str, Tensor]:
    """Gradients by autograd through the course's own network: a ``TwoLayerNet`` with the case's parameters.

    ``torch.func.functional_call`` loads the parameters into the module for one call, so the check exercises
    ``nn.Linear`` and the activation module exactly as the course uses them.
    """
    n_feature, n_hidden = params["W1"].shape
    n_output = params["W2"].shape[1]
    net = _network(n_feature, n_hidden, n_output, activation)
    leaves = {name: params[name].detach().requires_grad_(True) for name in PARAMETERS}
    with torch.enable_grad():
        Y_pred = torch.func.functional_call(net, state_dict_from_math(**leaves), (X,))
        f = nn.functional.mse_loss(Y_pred, Y, reduction=reduction)
        grads = torch.autograd.grad(f, [leaves[name] for name in PARAMETERS])
    return dict(zip(PARAMETERS, grads))


_NETWORKS: dict[tuple[int, int, int, str], TwoLayerNet] = {}


def _network(n_feature: int, n_hidden: int, n_output: int, activation: str) -> TwoLayerNet:
    # One module per shape: building nn.Linear costs more than the whole float64 forward pass it serves.
    key = (n_feature, n_hidden, n_output, activation)
    net = _NETWORKS.get(key)
    if net is None:
        net = _NETWORKS[key] = TwoLayerNet(n_feature, n_hidden, n_output, activation).requires_grad_(False)
    return net


# Step multipliers of the central differences: (+h, -h) for the estimate, (+2h, -2h) for its error.
_STEPS = (1.0, -1.0, 2.0, -2.0)
# In-place forms of the activations, for the finite differences' reused buffer (others: act(d) copied back).
_IN_PLACE: dict[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]] = {
    torch.sigmoid: torch.sigmoid_,
    torch.tanh: torch.tanh_,
    torch.relu: torch.relu_,
}


def finite_differences(
    X: Tensor,
    Y: Tensor,
    params: Mapping[str, Tensor],
    activation: str = "sigmoid",
    reduction: str = "sum",
    step: float = 1e-5,
    chunk_elements: int = 1 << 20,
) -> dict[str, tuple[Tensor, Tensor]]:
    """Central finite differences of f for every parameter element at once, with an error estimate each.

    Returns ``{name: (gradient, error_estimate)}`` in float64 whatever the inputs' dtype.

    Each perturbed loss follows from the cached forward pass without a Python loop over elements: moving b2_k
    or W2_jk by s changes one output column (by s or s * Hs[:, j]); moving b1_j or W1_fj changes one hidden
    column, H[:, j] + s (or + s * X[:, f]), and so the outputs by the rank-one d (x) W2[j, :] with
    d = act(H[:, j] + s x) - act(H[:, j]). The change of the loss is then summed over the changed residuals
    only, sum(-2 R dP + dP^2) with R = Y - Y_pred, which avoids subtracting two nearly equal full losses.

    Each element is perturbed by s = step * max(1, |theta|): 1e-5 balances the O(s^2) truncation error of a
    central difference against the O(u / s) rounding error in float64. The estimate is Richardson's
    extrapolation (4 D(s) - D(2s)) / 3 of the differences at s and 2s; its error is estimated by
    |D(s) - D(2s)| / 3 (the size of the O(s^2) term that the extrapolation removes, a generous bound on what
    is left) plus the rounding error of the differences. A kink (relu) within 2s of a pre-activation makes
    D(s) and D(2s) disagree, and so shows up as a large error estimate rather than as a wrong gradient.
    """
    X, Y = X.double(), Y.double()
    W1, b1, W2, b2 = (params[name].detach().double() for name in PARAMETERS)
    act = ACTIVATIONS[activation].forward
    n, f = X.shape
    hidden = W1.shape[1]
    c = 1.0 / Y.numel() if reduction == "mean" else 1.0
    u = torch.finfo(torch.float64).eps / 2
    mult = torch.tensor(_STEPS, dtype=torch.float64, device=X.device)

    # Everything of the hidden layer is kept transposed, (hidden, batch), the layout the loop below reads. Aa
    # is act(H).T with a row of 1 under it (see the output layer), At the view of it without that row.
    in_place = _IN_PLACE.get(act)
    Ht = torch.addmm(b1[:, None], W1.T, X.T)  # H.T
    Aa = torch.empty(hidden + 1, n, dtype=torch.float64, device=X.device)
    At = Aa[:hidden]
    if in_place is not None:
        in_place(At.copy_(Ht))
    else:
        At.copy_(act(Ht))
    Aa[hidden] = 1
    R = Y - torch.addmm(b2, At.T, W2)
    Qt = W2 @ R.T  # Q.T: how a change of A[i, j] moves the loss, to first order: -2 Q[i, j]
    w = (W2 * W2).sum(1)  # ... and to second order: w[j] per unit squared
    scale = 8 * c * u * (n + 2)  # rounding of a difference of the loss, per unit of the terms it sums

    def rowdot(a: Tensor, b: Tensor) -> Tensor:  # sum over the batch of a * b, row by row, no temporary
        return torch.bmm(a[:, None, :], b[:, :, None]).view(a.shape[0])

    # The differences of both blocks go side by side into one (4, m) tensor, m = (hidden + 1) o + hidden (f + 1).
    fa = f + 1
    k = (hidden + 1) * W2.shape[1]
    dL = torch.empty(len(_STEPS), k + hidden * fa, dtype=torch.float64, device=X.device)

    # Output layer: the loss is quadratic in W2 and b2, so the differences are exact but for rounding. b2 is
    # W2's row for a hidden unit whose output is always 1, so both are one (hidden + 1, n_output) block.
    Aa_abs = Aa if act is torch.sigmoid else Aa.abs()  # sigmoid is never negative
    AA = rowdot(Aa, Aa)[:, None]  # (hidden + 1, 1): sum over the batch of A^2 (n for the row of 1)
    s_out = step * torch.cat([W2, b2[None]]).abs().clamp(min=1)  # (hidden + 1, n_output)
    S = mult[:, None, None] * s_out
    torch.mul(S * AA - 2 * (Aa @ R), S, out=dL[:, :k].view(len(_STEPS), hidden + 1, -1))
    rounding_out = scale * (Aa_abs @ R.abs() + s_out * AA)

    # Hidden layer: the rounding of d = act(H + s x) - act(H) is about u * |act|, times |2 Q| in the loss:
    # the sum over the batch of (|Q| + w) (|A| + 1) = <|Q|, |A|> + sum |Q| + w (sum |A| + n).
    Qt_abs = Qt.abs()
    At_abs = Aa_abs[:hidden]
    rounding_per_unit = rowdot(Qt_abs, At_abs) + Qt_abs.sum(1) + w * (At_abs.sum(1) + n)
    rounding_per_unit.mul_(scale)  # (hidden,)
    # b1_j is W1's row for an input that is always 1 (H[:, j] + s = H[:, j] + s * 1), so both go through one
    # loop over chunks of hidden units. Per chunk: d = act(H + S x) - A in a reused buffer laid out
    # (J, 4, f + 1, n), then the change of the loss sum(d (d w - 2 Q)) = w |d|^2 - 2 <d, Q> as one norm and
    # one batched matrix-vector product, both reading d once. The buffer is kept near 1 MiB (2^17 numbers)
    # per thread so that it stays in cache; larger buffers measured slower, smaller ones pay Python per chunk.
    XT = torch.cat([X.T, torch.ones(1, n, dtype=X.dtype, device=X.device)])  # (f + 1, n): X.T and a row of 1
    s_hidden = step * torch.cat([W1.T, b1[:, None]], 1).abs().clamp(min=1)  # (hidden, f + 1)
    St = (s_hidden[:, None, :] * mult[:, None]).unsqueeze(-1)  # (hidden, 4, f + 1, 1)
    squares = torch.empty(hidden, len(_STEPS), fa, dtype=torch.float64, device=X.device)
    linear = torch.empty(hidden, len(_STEPS), fa, dtype=torch.float64, device=X.device)
    per_unit = len(_STEPS) * fa * n
    cached = (1 << 17) * max(1, torch.get_num_threads())
    width = max(1, min(hidden, min(chunk_elements, cached) // per_unit))  # bound memory: chunk hidden units
    # Kept from call to call (gradcheckers.scratch): fresh, their pages cost more than the loop's work.
    buffer, products = scratch(*2 * [(width, len(_STEPS), fa, n)], device=X.device)
    H3, A3, Q3, X3 = Ht[:, None, None, :], At[:, None, None, :], Qt[:, None, None, :], XT[None, None]
    for lo in range(0, hidden, width):
        hi = min(hidden, lo + width)
        d = buffer[: hi - lo]
        torch.addcmul(H3[lo:hi], St[lo:hi], X3, out=d)
        if in_place is not None:
            in_place(d)
        else:
            d.copy_(act(d))
        d.sub_(A3[lo:hi])
        torch.linalg.vector_norm(d, dim=-1, out=squares[lo:hi])
        # <d, Q> as a product and a sum over the batch: bmm of (4 (f + 1), n) by (n, 1) per hidden unit, a
        # batch of tiny matrix-vector products, took 1.7 times as long (66 vs 40 us at 113 units, n = 32).
        torch.sum(torch.mul(d, Q3[lo:hi], out=products[: hi - lo]), -1, out=linear[lo:hi])
    squares.square_().mul_(w[:, None, None]).sub_(linear, alpha=2)
    dL[:, k:].view(len(_STEPS), hidden, fa).copy_(squares.transpose(0, 1))

    # Both blocks through one Richardson step, in place (at P = 1e5 the temporaries of a plain version of
    # these lines cost a fifth of the loop above).
    if c != 1.0:
        dL.mul_(c)
    s_all = torch.cat([s_out.view(-1), s_hidden.view(-1)])
    rounding = torch.empty_like(s_all)
    rounding[:k] = rounding_out.view(-1)
    # The rounding of d = act(H + s x) - act(H) does not shrink with |x|: hence max(1, |x|), not |x|.
    torch.mul(rounding_per_unit[:, None], XT.abs().amax(1).clamp(min=1), out=rounding[k:].view(hidden, fa))
    two_s = s_all * 2
    d1 = torch.sub(dL[0], dL[1]).div_(two_s)  # D(s)
    d2 = torch.sub(dL[2], dL[3]).div_(two_s.mul_(2))  # D(2s)
    err = torch.sub(d1, d2).abs_().div_(3).add_(rounding.div_(s_all))  # |D(s) - D(2s)| / 3 + rounding / s
    grad = d1.mul_(4).sub_(d2).div_(3)  # (4 D(s) - D(2s)) / 3
    g_out, e_out = grad[:k].view(hidden + 1, -1), err[:k].view(hidden + 1, -1)
    g_hidden, e_hidden = grad[k:].view(hidden, fa), err[k:].view(hidden, fa)
    return {
        "W1": (g_hidden[:, :f].T.contiguous(), e_hidden[:, :f].T.contiguous()),
        "b1": (g_hidden[:, f].contiguous(), e_hidden[:, f].contiguous()),
        "W2": (g_out[:hidden], e_out[:hidden]),
        "b2": (g_out[hidden], e_out[hidden]),
    }


def draw(sizes: Sizes, generator: torch.Generator, scale: float = 1.0) -> dict[str, Tensor]:
    """Realistic float64 values for one case: standard-normal data and targets, weights scaled like a
    trained network's (W1 ~ 2/sqrt(n_feature) keeps pre-activations around +-2, where sigmoid is curved).

    ``scale`` multiplies every tensor: the stress range (scale up to 1e3) saturates the activations and
    overflows exp in float32, which is where sigma' written as exp(h)/(1 + exp(h))^2 breaks.
    """
    n, f, h, o = sizes.batch, sizes.n_feature, sizes.n_hidden, sizes.n_output

    def normal(*shape: int, std: float = 1.0) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64) * (std * scale)

    return {
        "X": normal(n, f),
        "Y": normal(n, o),
        "W1": normal(f, h, std=2.0 / math.sqrt(f)),
        "b1": normal(h),
        "W2": normal(h, o, std=1.0 / math.sqrt(h)),
        "b2": normal(o),
    }


def _shapes(sizes: Sizes) -> dict[str, tuple[int, ...]]:
    return {
        "X": (sizes.batch, sizes.n_feature),
        "Y": (sizes.batch, sizes.n_output),
        **parameter_shapes(sizes.n_feature, sizes.n_hidden, sizes.n_output),
    }


def make_assignment(activation: str = "sigmoid", reduction: str = "sum") -> Assignment:
    """The seed's network as an :class:`~gradcheckers.assignment.Assignment`, for any activation/reduction."""
    suffix = activation if reduction == "sum" else "mse-mean"
    loss_text = "||Y - Y_pred||_F^2" if reduction == "sum" else "mean((Y - Y_pred)^2)"

    def _loss(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
        return loss(Y, forward(X, W1, b1, W2, b2, activation)[2], reduction)

    def _reference(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> dict[str, Tensor]:
        return gradients(X, Y, W1, b1, W2, b2, activation, reduction)

    def _autograd(args: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return autograd_gradients(args["X"], args["Y"], args, activation, reduction)

    def _fd(args: Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        return finite_differences(args["X"], args["Y"], args, activation, reduction)

    def _rounding(args: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return rounding_magnitudes(**args, activation=activation, reduction=reduction)

    def _kinks(args: Mapping[str, Tensor]) -> Tensor:
        return args["X"] @ args["W1"] + args["b1"]

    return Assignment(
        name=f"two-layer-{suffix}",
        title=f"Two-layer network, {activation}, f = {loss_text}",
        inputs=("X", "Y"),
        parameters=PARAMETERS,
        shapes=_shapes,
        draw=draw,
        loss=_loss,
        reference=_reference,
        autograd=_autograd,
        finite_differences=_fd,
        rounding=_rounding,
        smooth=ACTIVATIONS[activation].smooth,
        holomorphic=activation in ("sigmoid", "tanh") and reduction == "sum",
        kinks=None if ACTIVATIONS[activation].smooth else _kinks,
    )


SIGMOID = make_assignment("sigmoid")
TANH = make_assignment("tanh")
RELU = make_assignment("relu")
MSE_MEAN = make_assignment("sigmoid", "mean")
