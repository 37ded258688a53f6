"""A layer a course assigns, as data (:class:`Layer`: its numpy forward and backward, torch reference, sizes,
hyperparameters, known right and wrong answers), checked with :func:`~gradcheckers.backward.check_backward` and
turned into an :class:`~gradcheckers.assignment.Assignment` for the gate.

The assignment's arguments are the layer's inputs that are not differentiated (labels, masks), then ``dout`` (the
random upstream gradient, an input like any other), then the differentiated inputs (its parameters); its loss is
``<dout, reference(inputs)>``, its reference forward the layer's ``reference`` (so the gate checks the submission's
forward too) and its hyperparameters are the layer's. A submission defines the course's functions
(``affine_forward``/``affine_backward``, or ``softmax_loss`` returning the loss and its gradient); an adapter
appended to it in its worker calls them in the course's convention and hands back the gradients by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradcheckers.assignment import ADAPTER_FORWARD_FUNCTION, ADAPTER_FUNCTION, Assignment, Sizes
from gradcheckers.backward import (
    DEFAULT_SIZE,
    Backward,
    BackwardResult,
    Forward,
    Input,
    InputSpec,
    as_input,
    check_backward,
)
from gradcheckers.errors import GradientMismatchError

__all__ = ["UPSTREAM", "Layer", "Variant", "layer_assignment"]

UPSTREAM = "dout"




@dataclass(frozen=True)
class Variant:
    """One implementation of a layer: a ``forward`` (None: the layer's own) and a ``backward``; ``fails`` names
    the input whose gradient it gets wrong (``"forward"`` for the forward), or is None for a correct one."""

    backward: Backward
    fails: str | None = None
    forward: Forward | None = None


@dataclass(frozen=True)
class Layer:
    """A layer a course assigns, as data: what :func:`check_backward` needs to check anyone's implementation of it.

    ``forward`` and ``backward`` are the correct numpy implementation in the course's calling convention;
    ``reference`` the forward in torch; ``wrong`` and ``correct`` are further implementations that must fail
    (at the input they name) and pass.
    """

    name: str
    title: str
    inputs: Mapping[str, InputSpec]
    forward: Forward
    backward: Backward
    reference: Callable[..., Tensor] | None = None
    sizes: Mapping[str, tuple[int, int] | int] = field(default_factory=dict)
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    where: Callable[[Sizes], bool] | None = None
    wrong: Mapping[str, Variant] = field(default_factory=dict)
    correct: Mapping[str, Variant] = field(default_factory=dict)
    # The names a submission defines for the gate: (forward, backward), or (loss, None) for a loss that returns its
    # own gradients (``loss, dx = softmax_loss(x, y)``). Default: <name>_forward, <name>_backward.
    functions: tuple[str, str | None] | None = None

    @property
    def function_names(self) -> tuple[str, str | None]:
        base = self.name.replace("-", "_")
        return self.functions or (f"{base}_forward", f"{base}_backward")

    def assignment(self) -> Assignment:
        """This layer as an :class:`~gradcheckers.assignment.Assignment` for the gate and ``check_formulas``."""
        return layer_assignment(self)

    def check(self, forward: Forward | None = None, backward: Backward | None = None, **options: Any
              ) -> BackwardResult:
        """:func:`check_backward` of ``forward`` (default: this layer's) and ``backward`` with this layer's inputs,
        sizes, hyperparameters and torch reference; ``options`` override any of them."""
        settings: dict[str, Any] = {"sizes": self.sizes, "hyperparameters": self.hyperparameters,
                                    "where": self.where, "reference": self.reference, **options}
        return check_backward(forward or self.forward, backward or self.backward, self.inputs, **settings)

    def assert_correct(self, forward: Forward | None = None, backward: Backward | None = None, **options: Any
                       ) -> None:
        """:meth:`check`, raising :class:`~gradcheckers.errors.GradientMismatchError` when it does not pass."""
        __tracebackhide__ = True
        result = self.check(forward, backward, **options)
        if not result.passed:
            raise GradientMismatchError(f"{self.name}: {result.message}")

# Runs in the submission's worker (no gradcheckers there): the course's forward, then its backward, on numpy arrays.
_ADAPTER = """

def {function}(*args, **hyperparameters):
    values = dict(zip({arguments!r}, args))
    inputs = [values[name].numpy() for name in {inputs!r}]
    dout = values[{upstream!r}].numpy()
    result = {forward}(*inputs, **hyperparameters)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TypeError("{forward} must return a pair: (out, cache), or (loss, gradients) for a loss")
    grads = {gradients}
    names = {wrt!r}
    if isinstance(grads, dict):
        return {{name: grads[name] if name in grads else grads["d" + name] for name in names}}
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    if len(grads) != len(names):
        raise TypeError("the backward returned %d gradient(s); expected %d (%s), in the order of the forward's "
                        "inputs" % (len(grads), len(names), ", ".join("d" + n for n in names)))
    return dict(zip(names, grads))


def {forward_function}(*args, **hyperparameters):
    values = dict(zip({arguments!r}, args))
    result = {forward}(*[values[name].numpy() for name in {inputs!r}], **hyperparameters)
    out = result[0] if isinstance(result, tuple) and len(result) == 2 else result
    return out if hasattr(out, "detach") else __import__("numpy").asarray(out)  # a loss may be a numpy scalar
"""
# How the adapter gets the gradients: from the course's backward, or, for a loss that returns its own gradient
# (``loss, dx = softmax_loss(x, y)``), that gradient times the (scalar) upstream gradient.
_FROM_BACKWARD = "{backward}(dout, result[1])"
_FROM_LOSS = "tuple(dout * g for g in result[1]) if isinstance(result[1], (tuple, list)) else dout * result[1]"


def _differentiated(layer: Layer) -> tuple[str, ...]:
    specs = {name: as_input(name, spec) for name, spec in layer.inputs.items()}
    return tuple(n for n, s in specs.items() if not isinstance(s, Input) or s.is_differentiable)


def _draw_inputs(layer: Layer, sizes: Sizes, rng: np.random.Generator) -> dict[str, np.ndarray]:
    drawn = {}
    for name, spec in layer.inputs.items():
        item = as_input(name, spec)
        drawn[name] = np.asarray(item.draw(sizes, rng) if isinstance(item, Input) else item(sizes, rng))
    return drawn


def layer_assignment(layer: Layer) -> Assignment:
    """The gate's view of ``layer``: see the module's docstring."""
    assert layer.reference is not None, f"layer {layer.name} has no torch reference"
    reference = layer.reference
    wrt = _differentiated(layer)
    order = tuple(layer.inputs)
    constants = (*(n for n in order if n not in wrt), UPSTREAM)
    hyper_names = tuple(layer.hyperparameters)

    def out_of(args: Mapping[str, Tensor], hyper: Mapping[str, Any]) -> Tensor:
        out = reference(*[args[n] for n in order], **hyper)
        return out[0] if isinstance(out, tuple) else out

    def draw(sizes: Sizes, generator: torch.Generator, scale: float = 1.0) -> dict[str, Tensor]:
        # Only from `generator`, so that a case's seed reproduces it; numpy's generator seeded from it.
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        arrays = _draw_inputs(layer, sizes, rng)
        tensors = {n: torch.from_numpy(a * scale if a.dtype.kind == "f" and n in wrt else a) for n, a in arrays.items()}
        hyper = {n: sizes[n] for n in hyper_names}
        shape = out_of({n: t.double() if t.is_floating_point() else t for n, t in tensors.items()}, hyper).shape
        tensors[UPSTREAM] = torch.from_numpy(rng.standard_normal(tuple(shape)))
        return tensors

    def shapes(sizes: Sizes) -> dict[str, tuple[int, ...]]:
        return {n: tuple(t.shape) for n, t in draw(sizes, torch.Generator().manual_seed(0)).items()}

    def forward(**kw: Any) -> Tensor:
        hyper = {n: kw.pop(n) for n in hyper_names}
        return out_of(kw, hyper)

    def loss(**kw: Any) -> Tensor:
        return (kw[UPSTREAM] * forward(**kw)).sum()

    def gradients(*args: Tensor, **hyper: Any) -> dict[str, Tensor]:
        values = dict(zip(constants + wrt, args))
        result = layer.forward(*[values[n].numpy() for n in order], **hyper)
        dout = values[UPSTREAM].numpy()
        grads = layer.backward(dout, result[1])
        grads = grads if isinstance(grads, tuple) else (grads,)
        return {n: torch.as_tensor(np.asarray(g)) for n, g in zip(wrt, grads)}

    forward_name, backward_name = layer.function_names
    adapter = _ADAPTER.format(function=ADAPTER_FUNCTION, forward_function=ADAPTER_FORWARD_FUNCTION,
                              arguments=constants + wrt, inputs=order, upstream=UPSTREAM,
                              forward=forward_name, wrt=wrt,
                              gradients=_FROM_LOSS if backward_name is None else
                              _FROM_BACKWARD.format(backward=backward_name))
    return Assignment(
        name=layer.name,
        title=layer.title,
        inputs=constants,
        parameters=wrt,
        shapes=shapes,
        draw=draw,
        loss=loss,
        reference=gradients,
        sizes={**{n: b for n, b in layer.sizes.items()}, **_default_sizes(layer)},
        hyperparameters=dict(layer.hyperparameters),
        constraint=layer.where,
        adapter=adapter,
        forward=forward,
    )


def _default_sizes(layer: Layer) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, spec in layer.inputs.items():
        item = as_input(name, spec)
        if isinstance(item, Input):
            for size in item.names():
                if size not in layer.sizes and size not in layer.hyperparameters:
                    found[size] = DEFAULT_SIZE
    return found
