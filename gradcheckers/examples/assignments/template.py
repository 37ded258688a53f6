"""A template for defining your own assignment: ridge regression, f = ||X W + b - Y||_F^2 + LAMBDA ||W||_F^2.

Copy this file, change the five marked parts, and point gradcheckers at it:

    gradcheckers check student.py --assignment path/to/my_assignment.py
    pytest -p gradcheckers --gradcheckers-submission student.py --gradcheckers-assignment path/to/my_assignment.py
    check_formulas(formulas, assignment="path/to/my_assignment.py")

The file must define a module-level ``Assignment`` named ``ASSIGNMENT`` (or give another name after a colon:
``path/to/file.py:RIDGE``). Students then submit ``grad_W(X, Y, W, b)`` and ``grad_b(X, Y, W, b)`` (one
function per parameter, taking the inputs then the parameters, in the order declared below), or one
``gradients(X, Y, W, b)`` returning ``{"W": ..., "b": ...}``.

Everything else is derived: Hypothesis draws sizes, dtypes, devices and seeds; autograd of ``loss`` and
batched central differences of ``loss`` are the references; the tolerance scales with the gradient's largest
entry. The optional hooks (``autograd``, ``finite_differences``, ``rounding``, ``kinks``) make it faster or
sharper; ``models/two_layer.py``, ``models/softmax.py`` and ``models/logistic.py`` show them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gradcheckers.assignment import Assignment, Sizes

LAMBDA = 0.1


# 1. The loss, as a function of the inputs and the parameters, by name. Use torch operations only (no .item(),
#    no numpy) so that the references can batch it; integer inputs (labels) are fine.
def loss(X: Tensor, Y: Tensor, W: Tensor, b: Tensor) -> Tensor:
    return ((X @ W + b - Y) ** 2).sum() + LAMBDA * (W**2).sum()


# 2. The correct gradients: what a student's functions are compared with in your own tests, and what
#    `python -m gradcheckers ...` needs nothing of; keep them next to the loss they differentiate.
def gradients(X: Tensor, Y: Tensor, W: Tensor, b: Tensor) -> dict[str, Tensor]:
    R = X @ W + b - Y  # df/d(X W + b) = 2 R
    return {"W": 2 * X.T @ R + 2 * LAMBDA * W, "b": 2 * R.sum(0)}


# 3. The shape of every argument from the drawn sizes. Here they are the seed's batch, n_feature, n_hidden and
#    n_output; hold the ones you do not use fixed (below) so they neither vary nor clutter counterexamples. An
#    assignment may instead name its own sizes and hyperparameters (Assignment(sizes=..., hyperparameters=...,
#    constraint=...); see the README's "Named sizes and hyperparameters").
def shapes(sizes: Sizes) -> dict[str, tuple[int, ...]]:
    n, f, o = sizes.batch, sizes.n_feature, sizes.n_output
    return {"X": (n, f), "Y": (n, o), "W": (f, o), "b": (o,)}


# 4. Realistic values for one case, in float64 on the CPU, drawn from `generator` only (so that a case's seed
#    reproduces it). `scale` (1, or up to 1e3 with --stress) should multiply every float tensor.
def draw(sizes: Sizes, generator: torch.Generator, scale: float = 1.0) -> dict[str, Tensor]:
    def normal(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale

    return {name: normal(*shape) for name, shape in shapes(sizes).items()}


# 5. The assignment itself: its name, the argument names (inputs, then parameters) and the functions above.
ASSIGNMENT = Assignment(
    name="ridge-regression",
    title=f"Ridge regression, f = ||X W + b - Y||_F^2 + {LAMBDA} ||W||_F^2",
    inputs=("X", "Y"),
    parameters=("W", "b"),
    shapes=shapes,
    draw=draw,
    loss=loss,
    reference=gradients,
    fixed_sizes={"n_hidden": 1},
    # A polynomial: complex-analytic, so gradcheckers.complex_step can serve as a near-exact oracle. Leave it
    # False if the loss uses abs, max, relu, clamp or mse_loss. A loss with kinks (relu, abs) sets
    # smooth=False and, for float32 guarantees, kinks=lambda args: <the pre-activations, one tensor>.
    holomorphic=True,
)
