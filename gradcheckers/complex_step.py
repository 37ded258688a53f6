"""Complex-step differentiation: a near-exact third oracle for losses that are complex-analytic.

For a real-analytic f, f(theta + i h e_k) = f(theta) + i h df/dtheta_k - h^2/2 f'' - i h^3/6 f''' + ..., so

    df/dtheta_k = Im f(theta + i h e_k) / h + O(h^2)

with no subtraction: nothing cancels, h can be 1e-20 (the O(h^2) term vanishes below any rounding) and the
result is as accurate as one evaluation of f itself, a few ulps of float64, where a central difference
(step 1e-5) keeps about 10 digits. It needs every operation of the loss to be a holomorphic function
evaluated in complex arithmetic: matmul, +, *, exp, tanh, sigmoid, x**2 and sum are; abs, max, relu,
clamp, ``mse_loss`` (no complex kernel) and anything that reads ``.real`` or compares are not (abs(z) has no
imaginary part at all, so it would silently give a zero derivative). An assignment declares it with
``Assignment.holomorphic``; the others are refused.

Every element of a parameter is perturbed at once: the perturbed copies are stacked and the loss is
evaluated with one ``torch.func.vmap`` call per chunk (a Python loop only where vmap cannot run the loss).

:func:`with_complex_step` turns an assignment into one whose second reference is the complex step instead
of finite differences, which tightens the agreement the two references must reach before an element is
judged from about 1e-8 (what a central difference can promise) to a few ulps of the gradient.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from torch import Tensor

from gradcheckers.assignment import COMPLEX_STEP_SUFFIX, Assignment, get_assignment
from gradcheckers.errors import InvalidArgument
from gradcheckers.references import finite_difference_gradients
from gradcheckers.tolerance import GENERIC_TERMS

__all__ = ["DEFAULT_STEP", "complex_step_gradients", "with_complex_step"]

# Im f(theta + ih) / h has truncation error h^2 |f'''| / 6: at h = 1e-20 that is 1e-40 relative, far below
# float64 rounding, and h * |theta| stays representable (the smallest normal double is 2.2e-308).
DEFAULT_STEP = 1e-20
_U64 = 2.0**-53
# Rounding of one complex evaluation, in ulps of the gradient's size, where no rounding analysis says more.
_GENERIC_ULPS = GENERIC_TERMS


def _refuse(assignment: Assignment) -> None:
    if not assignment.holomorphic:
        raise InvalidArgument(
            f"assignment={assignment.name!r} is not holomorphic: complex-step differentiation needs a loss "
            "written with complex-analytic operations only (matmul, +, *, exp, tanh, sigmoid, x**2, sum). "
            "abs, max, relu, clamp and mse_loss are not (abs and relu would silently give wrong derivatives, "
            "mse_loss has no complex kernel); write the loss as ((Y - P)**2).sum() and set holomorphic=True "
            "on the Assignment if that is what it computes"
        )


def complex_step_gradients(
    assignment: Assignment | str,
    args: Mapping[str, Tensor],
    *,
    step: float = DEFAULT_STEP,
    max_batch_elements: int = 1 << 22,
) -> dict[str, Tensor]:
    """df/dtheta for every parameter of a holomorphic assignment, by the complex step, in float64 on the CPU.

    ``args`` are the assignment's arguments (a case's tensors; any floating dtype: they are promoted to
    complex128, integer tensors such as labels are passed through). Raises
    :class:`~gradcheckers.errors.InvalidArgument` for an assignment that is not declared holomorphic, or
    when the loss turns out not to run on complex tensors.
    """
    spec = get_assignment(assignment)
    _refuse(spec)
    if not (isinstance(step, float) and 0 < step <= 1e-8):
        raise InvalidArgument(f"step={step!r} must be a float in (0, 1e-8]: the error is O(step^2)")
    values = {k: v.detach().to(torch.complex128) if v.is_floating_point() else v for k, v in args.items()}
    out: dict[str, Tensor] = {}
    for name in spec.parameters:
        theta = values[name]
        flat = theta.reshape(-1)
        numel = flat.numel()
        grad = torch.empty(numel, dtype=torch.float64, device=theta.device)
        chunk = max(1, max_batch_elements // max(numel, 1))
        for lo in range(0, numel, chunk):
            idx = torch.arange(lo, min(numel, lo + chunk), device=theta.device)
            batch = flat.repeat(idx.numel(), 1)
            batch[torch.arange(idx.numel(), device=theta.device), idx] += 1j * step
            losses = _losses(spec, values, name, batch.reshape(-1, *theta.shape))
            grad[lo : lo + idx.numel()] = losses.imag / step
        out[name] = grad.reshape(theta.shape).cpu()
    return out


def _losses(spec: Assignment, values: Mapping[str, Tensor], name: str, batch: Tensor) -> Tensor:
    def one(p: Tensor) -> Tensor:
        return spec.loss(**{**values, name: p}).reshape(())

    try:
        try:
            result = torch.func.vmap(one)(batch)
        except RuntimeError:
            result = torch.stack([one(p) for p in batch])  # a loss vmap cannot batch: one call per element
    except (RuntimeError, TypeError) as error:
        raise InvalidArgument(
            f"assignment={spec.name!r} is declared holomorphic, but its loss does not run on complex tensors "
            f"({type(error).__name__}: {error})"
        ) from None
    if not result.is_complex():
        raise InvalidArgument(
            f"assignment={spec.name!r} is declared holomorphic, but its loss returned a real {result.dtype} "
            "from complex inputs (abs(), .real or a cast drops the imaginary part the derivative is in)"
        )
    return result


def _complex_step_reference(spec: Assignment, args: Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
    """The complex-step gradient and its error bound, in the shape of a finite-differences oracle.

    The error of Im f(theta + ih)/h is the rounding of the evaluation: where the assignment has a rounding
    analysis, u_64 times its magnitude (the analysis bounds the rounding of a correct float64 computation of
    the gradient, and the complex evaluation is one); else GENERIC_TERMS ulps of the largest entry. Elements
    where the complex evaluation overflows (exp of a huge argument) fall back to finite differences.
    """
    grads = complex_step_gradients(spec, args)
    rounding = spec.rounding(args) if spec.rounding is not None else None
    out: dict[str, tuple[Tensor, Tensor]] = {}
    fallback: dict[str, tuple[Tensor, Tensor]] | None = None
    for name in spec.parameters:
        g = grads[name]
        if rounding is not None:
            err = _U64 * rounding[name].detach().double().cpu()
        else:
            finite = g[torch.isfinite(g)]
            scale = finite.abs().max() if finite.numel() else torch.tensor(0.0, dtype=torch.float64)
            err = torch.full_like(g, _GENERIC_ULPS * _U64) * scale
        bad = ~torch.isfinite(g)
        if bool(bad.any()):
            if fallback is None:
                fallback = (
                    spec.finite_differences(args)
                    if spec.finite_differences is not None
                    else finite_difference_gradients(spec.loss, args, spec.parameters)
                )
            fd, fd_err = (t.detach().double().cpu() for t in fallback[name])
            g = torch.where(bad, fd, g)
            err = torch.where(bad, fd_err, err)
        out[name] = (g, err)
    return out


def with_complex_step(assignment: Assignment | str) -> Assignment:
    """The assignment with the complex step as its second reference, in place of finite differences.

    ``check_formulas(f, assignment=with_complex_step("two-layer-sigmoid"))`` then requires autograd and the
    complex step to agree to a few ulps before an element is judged; by name, ``"two-layer-sigmoid+complex-step"``
    does the same (``gradcheckers check --assignment``, ``--gradcheckers-assignment``). Refuses
    non-holomorphic assignments.
    """
    spec = get_assignment(assignment)
    _refuse(spec)

    def reference(args: Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        return _complex_step_reference(spec, args)

    return dataclasses.replace(spec, name=f"{spec.name}{COMPLEX_STEP_SUFFIX}", finite_differences=reference)
