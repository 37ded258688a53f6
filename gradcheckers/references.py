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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gradcheckers.assignment import Assignment
from gradcheckers.evaluation import (
    LossFn,
    PromoteToFloat64,
    check_scalar,
    float64_args,
    losses_along,
    one_at_a_time,
)
from gradcheckers.kinks import kinked_elements

__all__ = [
    "DEFAULT_STEP",
    "PromoteToFloat64",
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
# thread: 2^18 (2 MiB) was the fastest of 2^16 ... 2^19 on the losses of benchmarks/generic.py and
# benchmarks/finite_differences.py (P = 1e3: 40 vs 75 ms and 19 vs 29 ms; P = 1e4: 3.6 vs 3.9 s and 1.17 vs
# 1.43 s against 2^19). Above it, a call's intermediates together pass twice glibc's mmap threshold, the
# heap's top is given back to the system after every call, and each call faults its pages in afresh
# (see gradcheckers.scratch): per copy, 256 copies of a 3,200-number loss cost 3 times what 128 did.
_BATCH_INTERMEDIATES = 1 << 18



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


def autograd_gradients(
    loss_fn: LossFn, args: Mapping[str, Tensor], wrt: Sequence[str], *, promote: bool = True
) -> dict[str, Tensor]:
    """d loss / d args[name] for each name in ``wrt``, by ``torch.autograd.grad``, computed in float64
    (``promote=False``: in the arguments' own dtype)."""
    args = float64_args(args) if promote else args
    leaves = {k: (v.detach().requires_grad_(True) if k in wrt else v) for k, v in args.items()}
    with torch.enable_grad(), (PromoteToFloat64() if promote else contextlib.nullcontext()):
        value = loss_fn(**leaves)
        check_scalar(value)
        grads = torch.autograd.grad(value, [leaves[name] for name in wrt], allow_unused=True)
    return {name: torch.zeros_like(leaves[name]) if g is None else g for name, g in zip(wrt, grads)}


def _copies_per_call(largest: int) -> int:
    """Perturbed copies per vmapped call: few enough that the loss's largest intermediate (``largest``
    numbers in one unbatched call) times the copies stays near _BATCH_INTERMEDIATES numbers per thread. The
    work per copy is a whole forward pass, so bigger batches only move more memory: with 2^22-number batches
    the two-layer loss at P = 1e3 ran slower than a per-element loop."""
    budget = _BATCH_INTERMEDIATES * max(1, torch.get_num_threads())
    return max(len(_MULTIPLIERS), budget // max(largest, 1))


@dataclass(frozen=True)
class _Base:
    """What one evaluation of the loss at the unperturbed point tells the batched evaluations."""

    rounding: float  # the rounding error of one evaluation (float64)
    copies: int  # perturbed copies per vmapped call (see _copies_per_call)
    # Whether the loss needs PromoteToFloat64: it met a tensor below float64 (a closure over float32 data, a
    # factory in the default dtype). One that did not computes the same numbers without the mode; a loss that
    # creates such a tensor only on a branch the base point does not take would then round in float32 there,
    # which the spot checks and the autograd cross-check do not see, but its copies lie within 2e-5 relative
    # of the base point, where a branch is a kink that the error estimate shows anyway.
    promote: bool


def _base(loss_fn: LossFn, args: Mapping[str, Tensor]) -> _Base:
    """The rounding error of one evaluation of the loss at ``args`` (float64), the number of perturbed copies
    per vmapped call and whether the evaluations need PromoteToFloat64."""
    mode = PromoteToFloat64(track_scale=True)
    with mode:
        base = loss_fn(**args)
    check_scalar(base)
    rounding = _LOSS_ROUNDING * _U64 * (base.detach().abs().item() + mode.scale + 1e-300)
    return _Base(rounding, _copies_per_call(mode.largest), mode.promoted or base.dtype != torch.float64)


def _steps(flat: Tensor, step: float) -> Tensor:
    """The step per element, s = step * max(1, |theta|); an infinite or NaN element gets the unit step (a
    step of inf would turn its differences into inf - inf = NaN; -inf + s is -inf, a difference of 0)."""
    return step * torch.where(flat.isfinite(), flat.abs(), 1.0).clamp(min=1)


def _perturbed(flat: Tensor, s: Tensor, idx: Tensor, out: Tensor | None = None) -> Tensor:
    """Copies of ``flat``, row m * k + j moved by _MULTIPLIERS[m] * s[idx[j]] in element idx[j] (k = |idx|),
    written into the first rows of ``out`` if given (all of them fresh copies: a loss may change its
    argument in place)."""
    mult = torch.tensor(_MULTIPLIERS, dtype=torch.float64, device=flat.device)
    k = idx.numel()
    rows = len(_MULTIPLIERS) * k
    if out is None:
        batch = flat.repeat(rows, 1)
    else:  # reusing the memory of the previous chunk saves allocating and faulting in a fresh one
        batch = out[:rows].copy_(flat.expand(rows, -1))
    batch[torch.arange(rows, device=flat.device), idx.repeat(len(_MULTIPLIERS))] += (mult[:, None] * s[idx]).reshape(-1)
    return batch


def _agree(batched: Tensor, unbatched: Tensor, rounding: float) -> bool:
    """Whether losses vmap computed match the same losses computed one call at a time. Each evaluation is
    within ``rounding`` of the exact value (the model behind the error estimate), so two honest evaluations
    of one point differ by at most 2 * rounding; NaN and infinities must match exactly."""
    close = (batched - unbatched).abs() <= 2 * rounding
    same = (batched == unbatched) | (batched.isnan() & unbatched.isnan())
    return bool((close | same).all())


def _perturbed_losses(
    loss_fn: LossFn, args: Mapping[str, Tensor], name: str, s: Tensor, chunk: int, base: _Base
) -> tuple[Tensor, bool]:
    """The losses at every perturbation of args[name], shape (len(_MULTIPLIERS), numel), and whether they
    came from vmap.

    vmap has had batching rules that compute a different function (torch 2.13's ``index_fill`` with a
    batched 0-d value): the estimate is then wrong while each copy evaluated alone is right. So the first
    element's +s copy and the last element's -2s copy are evaluated again alone (2 calls per parameter); if
    either disagrees, every copy is evaluated alone. A failure confined to other elements is caught by
    the autograd cross-check of finite_difference_gradients.
    """
    theta = args[name]
    flat = theta.reshape(-1)
    numel = flat.numel()
    values = torch.empty(len(_MULTIPLIERS), numel, dtype=torch.float64, device=theta.device)
    buffer = torch.empty(len(_MULTIPLIERS) * min(chunk, numel), numel, dtype=torch.float64, device=theta.device)
    batched = False
    for lo in range(0, numel, chunk):
        idx = torch.arange(lo, min(numel, lo + chunk), device=theta.device)
        batch = _perturbed(flat, s, idx, buffer).reshape(-1, *theta.shape)
        losses, vmapped = losses_along(loss_fn, args, name, batch, base.promote)
        batched |= vmapped
        values[:, lo : lo + idx.numel()] = losses.reshape(len(_MULTIPLIERS), idx.numel())
    if batched:
        ends = torch.tensor([0, numel - 1], device=theta.device)
        rows = _perturbed(flat, s, ends)[[0, 3 * 2 + 1]]  # (+s, first element) and (-2s, last element)
        alone = one_at_a_time(loss_fn, args, name, rows.reshape(-1, *theta.shape), base.promote)
        if not _agree(torch.stack([values[0, 0], values[3, -1]]), alone, base.rounding):
            every = _perturbed(flat, s, torch.arange(numel)).reshape(-1, *theta.shape)
            return one_at_a_time(loss_fn, args, name, every, base.promote).reshape(len(_MULTIPLIERS), numel), False
    return values, batched


def _richardson(values: Tensor, s: Tensor, rounding: float) -> tuple[Tensor, Tensor]:
    """Richardson's estimate (4 D(s) - D(2s)) / 3 from the losses at +-s, +-2s, and its error estimate."""
    d1 = (values[0] - values[1]) / (2 * s)
    d2 = (values[2] - values[3]) / (4 * s)
    return (4 * d1 - d2) / 3, (d1 - d2).abs() / 3 + rounding / s


# Elements of one parameter re-evaluated one copy at a time where the batched estimate disagrees with
# autograd: each costs 4 loss calls, so 1,024 bound the extra cost near that of 4,096 forward passes. A
# disagreement beyond that is a systematic failure the spot check of _perturbed_losses sees.
_RECHECK_LIMIT = 1024


def _disagreeing(grad: Tensor, err: Tensor, autograd: Tensor) -> Tensor:
    """Indices (at most _RECHECK_LIMIT, the worst first) where finite differences and autograd disagree by
    more than the estimate plus autograd's own float64 rounding (64 u max|g|, as in the honesty tests)."""
    ag = autograd.reshape(-1).to(grad)
    slack = 64 * _U64 * (ag[ag.isfinite()].abs().max().item() if bool(ag.isfinite().any()) else 0.0)
    excess = (grad - ag).abs() / (err + slack + 1e-300)
    bad = ag.isfinite() & ~(excess <= 1)
    excess = torch.where(bad, excess.nan_to_num(nan=float("inf")), -1.0)
    count = min(int(bad.sum()), _RECHECK_LIMIT)
    return excess.topk(count).indices if count else excess.new_zeros(0, dtype=torch.long)


def finite_difference_gradients(
    loss_fn: LossFn,
    args: Mapping[str, Tensor],
    wrt: Sequence[str],
    *,
    step: float = DEFAULT_STEP,
    max_batch_elements: int = 1 << 22,
    autograd: Mapping[str, Tensor] | None = None,
) -> dict[str, tuple[Tensor, Tensor]]:
    """Central-difference gradients of a scalar loss, with an error estimate per element, in float64.

    Every element of every parameter is perturbed by +-s and +-2s, s = step * max(1, |theta|); the perturbed
    copies are stacked in chunks of at most ``max_batch_elements`` numbers and evaluated with one vmapped
    call per chunk. The estimate is Richardson's (4 D(s) - D(2s)) / 3, its error |D(s) - D(2s)| / 3 plus
    the rounding error of the loss, about 16 u (|loss| + its largest intermediate) / s.

    Given ``autograd`` (gradients of the same loss, by name), the elements whose batched estimate disagrees
    with it are evaluated again one copy at a time, so that an operator vmap batches wrongly cannot make the
    two references disagree (the estimate is then the unbatched one, whatever it says).
    """
    args = float64_args(args)
    base = _base(loss_fn, args)
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for name in wrt:
        theta = args[name]
        flat = theta.reshape(-1)
        numel = flat.numel()
        s = _steps(flat, step)
        # Copies per vmapped call: besides the max_batch_elements bound on their numbers, see _copies_per_call.
        chunk = max(1, min(max_batch_elements // (len(_MULTIPLIERS) * max(numel, 1)), base.copies // len(_MULTIPLIERS)))
        values, batched = _perturbed_losses(loss_fn, args, name, s, chunk, base)
        grad, err = _richardson(values, s, base.rounding)
        if batched and autograd is not None and name in autograd:
            idx = _disagreeing(grad, err, autograd[name])
            if idx.numel():
                again = _perturbed(flat, s, idx).reshape(-1, *theta.shape)
                alone = one_at_a_time(loss_fn, args, name, again, base.promote)
                values[:, idx] = alone.reshape(len(_MULTIPLIERS), idx.numel())
                grad, err = _richardson(values, s, base.rounding)
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
    against the norm of everything else and misses it. The batched losses are spot-checked against one
    unbatched call, as in finite_difference_gradients.
    """
    args = float64_args(args)
    base = _base(loss_fn, args)
    copies, rounding = base.copies, base.rounding
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for name in wrt:
        theta = args[name]
        d = directions[name].double()
        # One step for every direction, from the largest finite |theta| (an infinite element would make it
        # infinite; a tensor with no elements has none).
        finite = theta[theta.isfinite()]
        s = step * max(1.0, finite.abs().max().item() if finite.numel() else 1.0)
        mult = torch.tensor(_MULTIPLIERS, dtype=torch.float64, device=theta.device) * s
        count = len(_MULTIPLIERS) * d.shape[0]

        def steps(lo: int, hi: int, theta: Tensor = theta, d: Tensor = d, mult: Tensor = mult) -> Tensor:
            # Rows lo..hi of the (multipliers x directions) perturbed copies, made a chunk at a time: all of them
            # at once would be 4 k copies of the parameter.
            rows = torch.arange(lo, hi, device=theta.device)
            scale = mult[rows // d.shape[0]].reshape(-1, *([1] * theta.dim()))
            return theta[None] + scale * d[rows % d.shape[0]]

        parts = [losses_along(loss_fn, args, name, steps(lo, min(lo + copies, count)), base.promote)
                 for lo in range(0, count, copies)]
        losses = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, dtype=torch.float64)
        if any(p[1] for p in parts) and not _agree(
                losses[-1:], one_at_a_time(loss_fn, args, name, steps(count - 1, count), base.promote), rounding):
            losses = one_at_a_time(loss_fn, args, name, steps(0, count), base.promote)
        losses = losses.reshape(len(_MULTIPLIERS), -1)
        d1 = (losses[0] - losses[1]) / (2 * s)
        d2 = (losses[2] - losses[3]) / (4 * s)
        out[name] = ((4 * d1 - d2) / 3, (d1 - d2).abs() / 3 + rounding / s)
    return out


def compute_references(assignment: Assignment, args: Mapping[str, Tensor]) -> References:
    """Both references for one case of an assignment, from the case's own values promoted to float64."""
    args64 = float64_args(args)
    wrt = assignment.parameters
    if assignment.autograd is not None:
        ag = assignment.autograd(args64)
    else:
        ag = autograd_gradients(assignment.loss, args64, wrt)
    if assignment.finite_differences is not None:
        fd = assignment.finite_differences(args64)
    else:
        fd = finite_difference_gradients(assignment.loss, args64, wrt, autograd=ag)
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
