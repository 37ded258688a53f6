"""The oracles: gradients by autograd and by finite differences, always in float64.

The analytic gradient under test is never compared with a single source: autograd is exact but runs the
same code path a careless formula might mirror, finite differences know nothing of derivatives but carry
truncation and rounding error. A case counts only where the two agree (see :mod:`gradcheckers.compare`).

The generic finite-difference path batches perturbations with ``torch.func.vmap`` over chunks of one-hot
directions (no Python loop over elements); an assignment may supply a faster structure-aware path, as the
two-layer network does (``models.two_layer.finite_differences``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from gradcheckers.assignment import Assignment

__all__ = [
    "DEFAULT_STEP",
    "References",
    "autograd_gradients",
    "compute_references",
    "directional_derivatives",
    "finite_difference_gradients",
]

# Central differences in float64 are most accurate near a relative step of 1e-5: the truncation error
# (~ s^2 |f'''|) and the rounding error (~ u |f| / s, u = 1.1e-16) balance there.
DEFAULT_STEP = 1e-5
# Steps of the differences: (+s, -s) for the estimate, (+2s, -2s) for its error (Richardson).
_MULTIPLIERS = (1.0, -1.0, 2.0, -2.0)
_U64 = torch.finfo(torch.float64).eps / 2

LossFn = Callable[..., Tensor]


@dataclass(frozen=True)
class References:
    """The two reference gradients of one case, in float64 on the CPU, plus what the tolerance needs."""

    autograd: dict[str, Tensor]
    finite_differences: dict[str, Tensor]
    fd_error: dict[str, Tensor]
    # Per element, how far a correct computation may be off, in units of the unit roundoff u; None when
    # the assignment gives no rounding analysis (the generic tolerance is used then).
    rounding: dict[str, Tensor] | None = None


def _float64(args: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().double() if v.is_floating_point() else v for k, v in args.items()}


class PromoteToFloat64(TorchFunctionMode):
    """Run torch functions with every lower-precision floating tensor argument promoted to float64.

    A user's loss often closes over data tensors in float32 (``lambda W: ((x @ W) ** 2).sum()``); inside this
    mode such a loss computes in float64 from the same values, so the references stay float64-accurate.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        def promote(x: object) -> object:
            if isinstance(x, Tensor) and x.is_floating_point() and x.dtype != torch.float64:
                return x.double()
            return x

        args = tree_map(promote, args)
        kwargs = tree_map(promote, kwargs or {})
        return func(*args, **kwargs)


def autograd_gradients(
    loss_fn: LossFn, args: Mapping[str, Tensor], wrt: Sequence[str], *, promote: bool = True
) -> dict[str, Tensor]:
    """d loss / d args[name] for each name in ``wrt``, by ``torch.autograd.grad``, computed in float64
    (``promote=False``: in the arguments' own dtype)."""
    leaves = {k: (v.detach().requires_grad_(True) if k in wrt else v) for k, v in args.items()}
    with torch.enable_grad(), (PromoteToFloat64() if promote else contextlib.nullcontext()):
        value = loss_fn(**leaves)
        _check_scalar(value)
        grads = torch.autograd.grad(value, [leaves[name] for name in wrt], allow_unused=True)
    return {name: torch.zeros_like(leaves[name]) if g is None else g for name, g in zip(wrt, grads)}


def _check_scalar(value: object) -> None:
    if not isinstance(value, Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise TypeError(f"the loss function must return a scalar tensor, got {shape}")


def _losses_along(loss_fn: LossFn, args: Mapping[str, Tensor], name: str, batch: Tensor) -> Tensor:
    """loss(args with args[name] replaced by each row of ``batch``), vectorized by vmap where it can be."""

    def one(p: Tensor) -> Tensor:
        return loss_fn(**{**args, name: p}).reshape(())

    try:
        with PromoteToFloat64():
            return torch.func.vmap(one)(batch)
    except Exception:
        # Losses that call .item(), use data-dependent control flow or in-place ops on the batched tensor
        # cannot be vmapped; they still get every perturbation, one forward call at a time.
        with PromoteToFloat64():
            return torch.stack([one(p) for p in batch])


def finite_difference_gradients(
    loss_fn: LossFn,
    args: Mapping[str, Tensor],
    wrt: Sequence[str],
    *,
    step: float = DEFAULT_STEP,
    max_batch_elements: int = 1 << 22,
) -> dict[str, tuple[Tensor, Tensor]]:
    """Central-difference gradients of a scalar loss, with an error estimate per element, in float64.

    Every element of every parameter is perturbed by +-s and +-2s, s = step * max(1, |theta|); the perturbed
    copies are stacked in chunks of at most ``max_batch_elements`` numbers and evaluated with one vmapped
    call per chunk. The estimate is Richardson's (4 D(s) - D(2s)) / 3, its error |D(s) - D(2s)| / 3 plus
    the rounding error of the loss, about 8 u |loss| / s.
    """
    args = _float64(args)
    with PromoteToFloat64():
        base = loss_fn(**args)
    _check_scalar(base)
    rounding = 8 * _U64 * (base.detach().abs().item() + 1e-300)
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for name in wrt:
        theta = args[name]
        flat = theta.reshape(-1)
        numel = flat.numel()
        s = step * flat.abs().clamp(min=1)
        mult = torch.tensor(_MULTIPLIERS, dtype=torch.float64, device=theta.device)
        chunk = max(1, max_batch_elements // (len(_MULTIPLIERS) * max(numel, 1)))
        values = torch.empty(len(_MULTIPLIERS), numel, dtype=torch.float64, device=theta.device)
        for lo in range(0, numel, chunk):
            idx = torch.arange(lo, min(numel, lo + chunk), device=theta.device)
            k = idx.numel()
            batch = flat.repeat(len(_MULTIPLIERS) * k, 1)
            rows = torch.arange(len(_MULTIPLIERS) * k, device=theta.device)
            cols = idx.repeat(len(_MULTIPLIERS))
            batch[rows, cols] += (mult[:, None] * s[idx]).reshape(-1)
            losses = _losses_along(loss_fn, args, name, batch.reshape(-1, *theta.shape))
            values[:, lo : lo + k] = losses.reshape(len(_MULTIPLIERS), k).detach()
        d1 = (values[0] - values[1]) / (2 * s)
        d2 = (values[2] - values[3]) / (4 * s)
        grad = (4 * d1 - d2) / 3
        err = (d1 - d2).abs() / 3 + rounding / s
        out[name] = (grad.reshape(theta.shape), err.reshape(theta.shape))
    return out


def directional_derivatives(
    loss_fn: LossFn,
    args: Mapping[str, Tensor],
    wrt: Sequence[str],
    directions: Mapping[str, Tensor],
    *,
    step: float = DEFAULT_STEP,
) -> dict[str, tuple[Tensor, Tensor]]:
    """Central differences along given directions, one set per parameter: ``directions[name]`` has shape
    (k, *param.shape) and the result (k,) derivatives with their error estimates.

    Used for large parameters where the full gradient would cost too many loss evaluations. Directions are
    drawn per tensor on purpose: a direction over the whole parameter vector weighs an error in one element
    against the norm of everything else and misses it.
    """
    args = _float64(args)
    with PromoteToFloat64():
        base = loss_fn(**args)
    _check_scalar(base)
    rounding = 8 * _U64 * (base.detach().abs().item() + 1e-300)
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for name in wrt:
        theta = args[name]
        d = directions[name].double()
        s = step * max(1.0, theta.abs().max().item())
        mult = torch.tensor(_MULTIPLIERS, dtype=torch.float64, device=theta.device)
        batch = theta[None, None] + (mult[:, None] * s).reshape(-1, 1, *([1] * theta.dim())) * d[None]
        losses = _losses_along(loss_fn, args, name, batch.reshape(-1, *theta.shape)).reshape(4, -1).detach()
        d1 = (losses[0] - losses[1]) / (2 * s)
        d2 = (losses[2] - losses[3]) / (4 * s)
        out[name] = ((4 * d1 - d2) / 3, (d1 - d2).abs() / 3 + rounding / s)
    return out


def compute_references(assignment: Assignment, args: Mapping[str, Tensor]) -> References:
    """Both references for one case of an assignment, from the case's own values promoted to float64."""
    args64 = _float64(args)
    wrt = assignment.parameters
    if assignment.autograd is not None:
        ag = assignment.autograd(args64)
    else:
        ag = autograd_gradients(assignment.loss, args64, wrt)
    if assignment.finite_differences is not None:
        fd = assignment.finite_differences(args64)
    else:
        fd = finite_difference_gradients(assignment.loss, args64, wrt)
    rounding = assignment.rounding(args64) if assignment.rounding is not None else None

    def cpu(t: Tensor) -> Tensor:
        return t.detach().to("cpu", torch.float64)

    return References(
        autograd={k: cpu(ag[k]) for k in wrt},
        finite_differences={k: cpu(fd[k][0]) for k in wrt},
        fd_error={k: cpu(fd[k][1]) for k in wrt},
        rounding=None if rounding is None else {k: cpu(rounding[k]) for k in wrt},
    )
