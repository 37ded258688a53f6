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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

from gradcheckers.assignment import Assignment
from gradcheckers.kinks import kinked_elements

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
# Rounding of one loss evaluation, in units of u times (|loss| + its largest intermediate |value|): a few
# roundings per term of the largest size; 16 covers every function in tests/test_references.py (8 did not).
_LOSS_ROUNDING = 16
# Numbers in the largest intermediate of one batched loss call (copies x the loss's largest tensor), per
# thread: 2^19 (4 MiB, about a core's cache) was the fastest of 2^14 ... 2^21 on every loss of
# benchmarks/generic.py and benchmarks/finite_differences.py.
_BATCH_INTERMEDIATES = 1 << 19

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
    # Per element, True where a kink (relu, abs) within rounding or finite-difference reach makes the
    # element undecidable (gradcheckers.kinks); None when no element of the case is near one.
    kinked: dict[str, Tensor] | None = None


def _float64(args: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().double() if v.is_floating_point() else v for k, v in args.items()}


class PromoteToFloat64(TorchFunctionMode):
    """Run torch functions with every lower-precision floating tensor argument promoted to float64.

    A user's loss often closes over data tensors in float32 (``lambda W: ((x @ W) ** 2).sum()``); inside this
    mode such a loss computes in float64 from the same values, so the references stay float64-accurate.
    """

    # The largest number of elements of a tensor any call returned: the size of the loss's intermediates,
    # which finite_difference_gradients uses to size its batches of perturbed copies.
    largest = 0

    def __init__(self, track_scale: bool = False) -> None:
        super().__init__()
        # With track_scale, the largest |value| any intermediate took: the rounding error of a loss is about
        # u times its largest terms, not u times the (possibly cancelled) value of the loss itself.
        self.track_scale = track_scale
        self.scale = 0.0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # Promoting walks every argument with tree_map, which costs more than a small op itself: skip it
        # when no argument needs it.
        if _needs_promotion(args) or _needs_promotion(kwargs.values()):
            args = tree_map(_promote, args)
            kwargs = tree_map(_promote, kwargs)
        result = func(*args, **kwargs)
        if isinstance(result, Tensor) and result.numel() > self.largest:
            self.largest = result.numel()
        if self.track_scale and isinstance(result, Tensor) and result.is_floating_point() and result.numel():
            self.scale = max(self.scale, float(result.detach().abs().max()))
        return result


def _promote(x: object) -> object:
    if isinstance(x, Tensor) and x.is_floating_point() and x.dtype != torch.float64:
        return x.double()
    return x


_LEAVES = (int, float, complex, bool, str, type(None), type(Ellipsis), slice, torch.dtype, torch.device,
           torch.layout, torch.memory_format)


def _needs_promotion(values: Iterable[object]) -> bool:
    """Whether any value, or any value inside a list, tuple or dict, is a floating tensor below float64."""
    for x in values:
        if isinstance(x, Tensor):
            if x.dtype != torch.float64 and x.is_floating_point():
                return True
        elif isinstance(x, (list, tuple)):
            if _needs_promotion(x):
                return True
        elif isinstance(x, dict):
            if _needs_promotion(x.values()):
                return True
        elif not isinstance(x, _LEAVES):
            return True  # some other container tree_map may look into: let it
    return False


def autograd_gradients(
    loss_fn: LossFn, args: Mapping[str, Tensor], wrt: Sequence[str], *, promote: bool = True
) -> dict[str, Tensor]:
    """d loss / d args[name] for each name in ``wrt``, by ``torch.autograd.grad``, computed in float64
    (``promote=False``: in the arguments' own dtype)."""
    args = _float64(args) if promote else args
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


def _copies_per_call(largest: int) -> int:
    """Perturbed copies per vmapped call: few enough that the loss's largest intermediate (``largest``
    numbers in one unbatched call) times the copies stays near _BATCH_INTERMEDIATES numbers per thread. The
    work per copy is a whole forward pass, so bigger batches only move more memory: with 2^22-number batches
    the two-layer loss at P = 1e3 ran slower than a per-element loop."""
    budget = _BATCH_INTERMEDIATES * max(1, torch.get_num_threads())
    return max(len(_MULTIPLIERS), budget // max(largest, 1))


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
    the rounding error of the loss, about 16 u (|loss| + its largest intermediate) / s.
    """
    args = _float64(args)
    mode = PromoteToFloat64(track_scale=True)
    with mode:
        base = loss_fn(**args)
    _check_scalar(base)
    rounding = _LOSS_ROUNDING * _U64 * (base.detach().abs().item() + mode.scale + 1e-300)
    # Copies per vmapped call: besides the max_batch_elements bound on their numbers, see _copies_per_call.
    copies = _copies_per_call(mode.largest)
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for name in wrt:
        theta = args[name]
        flat = theta.reshape(-1)
        numel = flat.numel()
        s = step * flat.abs().clamp(min=1)
        mult = torch.tensor(_MULTIPLIERS, dtype=torch.float64, device=theta.device)
        chunk = max(1, min(max_batch_elements // (len(_MULTIPLIERS) * max(numel, 1)), copies // len(_MULTIPLIERS)))
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
    mode = PromoteToFloat64(track_scale=True)
    with mode:
        base = loss_fn(**args)
    _check_scalar(base)
    rounding = _LOSS_ROUNDING * _U64 * (base.detach().abs().item() + mode.scale + 1e-300)
    copies = _copies_per_call(mode.largest)
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for name in wrt:
        theta = args[name]
        d = directions[name].double()
        s = step * max(1.0, theta.abs().max().item())
        mult = torch.tensor(_MULTIPLIERS, dtype=torch.float64, device=theta.device)
        batch = theta[None, None] + (mult[:, None] * s).reshape(-1, 1, *([1] * theta.dim())) * d[None]
        batch = batch.reshape(-1, *theta.shape)
        losses = torch.cat([_losses_along(loss_fn, args, name, batch[lo : lo + copies])
                            for lo in range(0, batch.shape[0], copies)]).reshape(4, -1).detach()
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
    kinked = kinked_elements(assignment, args)  # from the case's own dtype: it sets the rounding band

    def cpu(t: Tensor) -> Tensor:
        return t.detach().to("cpu", torch.float64)

    return References(
        autograd={k: cpu(ag[k]) for k in wrt},
        finite_differences={k: cpu(fd[k][0]) for k in wrt},
        fd_error={k: cpu(fd[k][1]) for k in wrt},
        rounding=None if rounding is None else {k: cpu(rounding[k]) for k in wrt},
        kinked=kinked,
    )
