"""What is being checked: an assignment's parameters, data, loss, and reference gradients, as data.

An :class:`Assignment` is everything the machinery (strategies, oracles, verdicts, plugin items, gate
reports) needs to know about one gradient exercise. The seed's two-layer sigmoid network is one instance
(``models.two_layer.SIGMOID``), not a special case in the code. A :class:`Case` is one concrete problem: sizes,
dtype, device and the seed its tensors are drawn from, so that seven small fields reproduce it exactly.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gradcheckers.errors import InvalidArgument

__all__ = ["Assignment", "Case", "Sizes", "available_assignments", "get_assignment"]

SIZE_NAMES = ("batch", "n_feature", "n_hidden", "n_output")


@dataclass(frozen=True, order=True)
class Sizes:
    """The problem dimensions a case is drawn at."""

    batch: int
    n_feature: int
    n_hidden: int
    n_output: int

    def describe(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name in SIZE_NAMES)


@dataclass(frozen=True)
class Case:
    """One problem instance; its tensors are a pure function of these fields (see ``Assignment.tensors``)."""

    sizes: Sizes
    dtype: str = "float64"
    device: str = "cpu"
    seed: int = 0
    scale: float = 1.0
    # How the data (the first input, X) is shaped after drawing: one of DATA_REGIMES (see apply_regime).
    regime: str = "normal"

    def describe(self) -> str:
        scale = "" if self.scale == 1.0 else f", scale={self.scale:g}"
        regime = "" if self.regime == "normal" else f", data={self.regime}"
        return f"{self.sizes.describe()}, dtype={self.dtype}, device={self.device}, seed={self.seed}{scale}{regime}"

    def to_json(self) -> dict[str, Any]:
        """The counterexample object of the JSON report (its schema is documented in the README)."""
        out: dict[str, Any] = {name: getattr(self.sizes, name) for name in SIZE_NAMES}
        out.update(dtype=self.dtype, device=self.device, seed=self.seed, scale=self.scale, regime=self.regime)
        return out

    def replace(self, **changes: Any) -> Case:
        sizes = {f.name: changes.pop(f.name, getattr(self.sizes, f.name)) for f in fields(Sizes)}
        base: dict[str, Any] = {"sizes": Sizes(**sizes), "dtype": self.dtype, "device": self.device,
                                "seed": self.seed, "scale": self.scale, "regime": self.regime}
        base.update(changes)
        return Case(**base)


TensorMap = Mapping[str, Tensor]


@dataclass(frozen=True)
class Assignment:
    """A gradient exercise, described by data and a few functions over named tensors.

    - ``inputs`` and ``parameters`` name the arguments of every submitted function, in order
      (``grad_<parameter>(*inputs, *parameters)``); the gradients are taken with respect to ``parameters``.
    - ``draw(sizes, generator, scale)`` returns float64 (or integer, for labels) CPU tensors for every
      argument; a case's tensors are these, cast to the case's dtype and moved to its device.
    - ``loss(**args)`` is the scalar loss; ``reference(**args)`` the correct analytic gradients.
    - ``autograd``, ``finite_differences`` and ``rounding`` are optional fast or exact paths; without them
      the generic oracles in :mod:`gradcheckers.references` are used (autograd of ``loss``, batched central
      differences of ``loss``, and a tolerance relative to the gradient's largest entry).
    - ``holomorphic``: the loss is a complex-analytic function of the parameters, so complex-step
      differentiation applies to it (:mod:`gradcheckers.complex_step`).
    - ``fixed_sizes`` holds sizes the assignment does not use at one value; ``min_sizes`` raises the lower
      bound of others (a softmax needs two classes). Cases never go below them, nor does a diagnosis.
    - ``kinks(args)``: for a loss with piecewise parts (``smooth=False``), the arguments of every piecewise
      function (relu's pre-activations, say) as one tensor, a kink where an entry is 0. Gradient elements
      that depend on an entry within rounding or finite-difference reach of 0 are inconclusive
      (:mod:`gradcheckers.kinks`).
    """

    name: str
    title: str
    inputs: tuple[str, ...]
    parameters: tuple[str, ...]
    shapes: Callable[[Sizes], dict[str, tuple[int, ...]]]
    draw: Callable[[Sizes, torch.Generator, float], dict[str, Tensor]]
    loss: Callable[..., Tensor]
    reference: Callable[..., dict[str, Tensor]]
    autograd: Callable[[TensorMap], dict[str, Tensor]] | None = None
    finite_differences: Callable[[TensorMap], dict[str, tuple[Tensor, Tensor]]] | None = None
    rounding: Callable[[TensorMap], dict[str, Tensor]] | None = None
    smooth: bool = True
    holomorphic: bool = False
    fixed_sizes: Mapping[str, int] = field(default_factory=dict)
    kinks: Callable[[TensorMap], Tensor] | None = None
    min_sizes: Mapping[str, int] = field(default_factory=dict)

    @property
    def arguments(self) -> tuple[str, ...]:
        return self.inputs + self.parameters

    def tensors(self, case: Case) -> dict[str, Tensor]:
        """The case's arguments at its dtype and device (floating tensors only are cast)."""
        generator = torch.Generator().manual_seed(generator_seed(case))
        dtype = getattr(torch, case.dtype)
        values = apply_regime(dict(self.draw(case.sizes, generator, case.scale)), self.inputs[0], case.regime,
                              generator)
        return {
            name: (t.to(dtype) if t.is_floating_point() else t).to(case.device) for name, t in values.items()
        }


def generator_seed(case: Case) -> int:
    """The seed of the generator a case's tensors come from: the case's seed mixed with its sizes. Hypothesis
    draws the same small seeds again and again within a run (seed 0 gave 29 distinct seeds in 100 cases), and
    with the seed alone, cases of different sizes share their first values (torch.randn fills in order)."""
    if all(getattr(case.sizes, name) == 1 for name in SIZE_NAMES):
        return case.seed  # the smallest case keeps the plain seed: `manual_seed(seed)` reproduces it by hand
    text = f"{case.seed}:{','.join(str(getattr(case.sizes, name)) for name in SIZE_NAMES)}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


# Value regimes of the data, beyond what a normal draw reaches with any useful probability: every element
# negative (a formula wrong only where X < 0 passes a normal draw of any size above one or two elements), about
# half of the elements exactly zero (as ReLU outputs and one-hot data are), and columns of mixed magnitudes,
# 10^-2 to 10^1 (a factor of 10 keeps sigmoid and tanh curved at the default scale; --stress goes further).
DATA_REGIMES = ("normal", "negative", "zeros", "mixed-scales")


def apply_regime(values: dict[str, Tensor], name: str, regime: str, generator: torch.Generator) -> dict[str, Tensor]:
    """``values`` with the data tensor ``name`` reshaped by ``regime``; integer data (labels) is left alone.
    Random choices come from ``generator`` after the draw, so the case's fields still reproduce it exactly."""
    data = values.get(name)
    if regime == "normal" or data is None or not data.is_floating_point():
        return values
    if regime == "negative":
        data = -data.abs()
    elif regime == "zeros":
        data = data * (torch.rand(data.shape, generator=generator, dtype=data.dtype) < 0.5)
    elif regime == "mixed-scales":
        columns = data.shape[-1] if data.dim() else 1
        powers = torch.randint(-2, 2, (columns,), generator=generator).to(data.dtype)
        data = data * torch.pow(10.0, powers)
    else:
        raise InvalidArgument(f"regime={regime!r} is not one of {DATA_REGIMES}")
    return {**values, name: data}


_BUILTIN = {
    "two-layer-sigmoid": "gradcheckers.models.two_layer:SIGMOID",
    "two-layer-tanh": "gradcheckers.models.two_layer:TANH",
    "two-layer-relu": "gradcheckers.models.two_layer:RELU",
    "two-layer-mse-mean": "gradcheckers.models.two_layer:MSE_MEAN",
    "softmax-classifier": "gradcheckers.models.softmax:SOFTMAX_CLASSIFIER",
    "logistic-regression": "gradcheckers.models.logistic:LOGISTIC_REGRESSION",
}
DEFAULT_ASSIGNMENT = "two-layer-sigmoid"
COMPLEX_STEP_SUFFIX = "+complex-step"


def available_assignments() -> list[str]:
    """Names of the bundled assignments whose definitions import."""
    names = []
    for name, target in _BUILTIN.items():
        if importlib.util.find_spec(target.split(":")[0]) is not None:
            names.append(name)
    return names


def get_assignment(spec: str | Assignment | None = None) -> Assignment:
    """An assignment by bundled name, by ``path/to/file.py[:NAME]``, or ``module:NAME``; None is the seed's.

    A definition file must define a module-level :class:`Assignment` called ``ASSIGNMENT`` (or the NAME
    given after the colon). A ``+complex-step`` suffix makes the complex step the second reference of a
    holomorphic assignment (:func:`gradcheckers.complex_step.with_complex_step`).
    """
    if isinstance(spec, Assignment):
        return spec
    spec = spec or DEFAULT_ASSIGNMENT
    if spec.endswith(COMPLEX_STEP_SUFFIX):
        from gradcheckers.complex_step import with_complex_step

        return with_complex_step(spec[: -len(COMPLEX_STEP_SUFFIX)])
    target = _BUILTIN.get(spec, spec)
    location, _, attribute = target.rpartition(":") if ":" in target else (target, "", "")
    attribute = attribute or "ASSIGNMENT"
    if location.endswith(".py") or Path(location).suffix == ".py":
        path = Path(location)
        if not path.is_file():
            raise InvalidArgument(f"assignment={spec!r}: no such file {path}")
        module_name = f"_gradcheckers_assignment_{abs(hash(path.resolve()))}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(location)
        except ImportError:
            raise InvalidArgument(
                f"assignment={spec!r} is neither a bundled assignment ({', '.join(_BUILTIN)}) nor an "
                "importable module or .py file"
            ) from None
    value = getattr(module, attribute, None)
    if not isinstance(value, Assignment):
        raise InvalidArgument(f"assignment={spec!r}: {location} defines no Assignment named {attribute}")
    return value
