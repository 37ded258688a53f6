"""Evaluating a loss as the oracles do: in float64 (a loss closing over float32 data promoted), and along one
parameter for a batch of values of it (vectorised by vmap where the loss allows, one call per value where not).

Shared by the finite differences (:mod:`gradcheckers.references`), the kink detection (:mod:`gradcheckers.kinks`)
and the rounding model (:mod:`gradcheckers.rounding`), none of which needs another's module for it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

__all__ = ["LossFn", "PromoteToFloat64", "check_scalar", "float64_args", "losses_along", "one_at_a_time", "promote",
           "promoting"]

LossFn = Callable[..., Tensor]


def float64_args(args: Mapping[str, Tensor]) -> dict[str, Tensor]:
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
        # Whether any call had an argument below float64 (or one it could not tell): a loss that promotes
        # nothing at its base point computes in float64 alone, and its perturbed copies can skip the mode.
        self.promoted = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # Promoting walks every argument with tree_map, which costs more than a small op itself: skip it
        # when no argument needs it.
        if _needs_promotion(args) or _needs_promotion(kwargs.values()):
            self.promoted = True
            args = tree_map(promote, args)
            kwargs = tree_map(promote, kwargs)
        result = func(*args, **kwargs)
        if isinstance(result, Tensor) and result.numel() > self.largest:
            self.largest = result.numel()
        if self.track_scale and isinstance(result, Tensor) and result.is_floating_point():
            # Finite values only: an infinity the loss masks out (masked softmin fills with +inf) rounds nothing
            # the loss sums, and one that reaches the loss makes it non-finite, which its callers see anyway.
            values = _stored_values(result.detach())
            values = values[values.isfinite()]
            if values.numel():
                self.scale = max(self.scale, float(values.abs().max()))
        return result


def _stored_values(t: Tensor) -> Tensor:
    """The numbers a tensor stores: a sparse tensor's nonzeros (reductions such as max do not run on sparse
    layouts, and the implicit zeros add nothing to the scale of the terms)."""
    if t.layout == torch.sparse_coo:
        return t._values()
    if t.layout != torch.strided:
        return t.values()  # the compressed layouts (CSR, CSC, BSR, BSC)
    return t


def promote(x: object) -> object:
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


def check_scalar(value: object) -> None:
    if not isinstance(value, Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise TypeError(f"the loss function must return a scalar tensor, got {shape}")


def promoting(promote: bool) -> contextlib.AbstractContextManager[object]:
    """PromoteToFloat64 where the loss needs it (see _Base.promote); nothing where it computes in float64 alone:
    the mode runs Python on every op of every batched call (at P = 1e2, benchmarks/generic.py's MLP, 12% of
    finite_difference_gradients' CPU time; nothing measurable at 1e3, where the ops themselves dominate)."""
    return PromoteToFloat64() if promote else contextlib.nullcontext()


def losses_along(
    loss_fn: LossFn, args: Mapping[str, Tensor], name: str, batch: Tensor, promote: bool = True
) -> tuple[Tensor, bool]:
    """loss(args with args[name] replaced by each row of ``batch``), vectorized by vmap where it can be, and
    whether vmap batched them (False: one forward call per row)."""

    def one(p: Tensor) -> Tensor:
        return loss_fn(**{**args, name: p}).reshape(())

    try:
        with promoting(promote), warnings.catch_warnings():
            # An op without a batching rule runs through vmap's per-copy fallback with a warning for every
            # call; the result is right (or caught by the spot checks below), so the warning is only noise.
            warnings.filterwarnings("ignore", message="There is a performance drop", category=UserWarning)
            return torch.func.vmap(one)(batch).detach(), True
    except Exception:
        # Losses that call .item(), use data-dependent control flow or in-place ops on the batched tensor
        # cannot be vmapped; they still get every perturbation, one forward call at a time.
        return one_at_a_time(loss_fn, args, name, batch, promote), False


def one_at_a_time(
    loss_fn: LossFn, args: Mapping[str, Tensor], name: str, batch: Tensor, promote: bool = True
) -> Tensor:
    """loss(args with args[name] replaced by each row of ``batch``), one call per row. Each row is handed over as
    a tensor of its own (a clone, one copy of the parameter's size beside a whole forward pass): a row of
    ``batch`` is a view at an offset into its storage, and a loss that reads its argument through the storage
    (``as_strided(x, size, stride, storage_offset=0)``) would read the batch's first row instead."""
    with promoting(promote):
        return torch.stack([loss_fn(**{**args, name: p.clone()}).reshape(()) for p in batch]).detach()
