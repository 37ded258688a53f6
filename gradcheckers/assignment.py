"""What is being checked: an assignment's parameters, data, loss, and reference gradients, as data.

An :class:`Assignment` is everything the machinery (strategies, oracles, verdicts, plugin items, gate
reports) needs to know about one gradient exercise. The seed's two-layer sigmoid network is one instance
(``models.two_layer.SIGMOID``), not a special case in the code. A :class:`Case` is one concrete problem: sizes,
dtype, device and the seed its tensors are drawn from, so that seven small fields reproduce it exactly.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gradcheckers.errors import InvalidArgument

__all__ = ["Assignment", "Case", "Hyperparameter", "Sizes", "available_assignments", "get_assignment"]

SIZE_NAMES = ("batch", "n_feature", "n_hidden", "n_output")


SizeValue = int | float | str | bool


class Sizes:
    """The named sizes and hyperparameters a case is drawn at: an immutable, ordered mapping of names to values.

    The seed's four sizes may be given by position (``Sizes(2, 3, 4, 1)`` is batch=2, n_feature=3, n_hidden=4,
    n_output=1); any other assignment names its own (``Sizes(N=2, C=3, stride=2, pad=1)``). Values are read as
    attributes (``sizes.batch``) or by key (``sizes["stride"]``). Hyperparameters (ints, floats, choices,
    booleans) live here beside the sizes, so that they are drawn, shrunk and reported the same way.
    """

    __slots__ = ("_items",)
    _items: tuple[tuple[str, SizeValue], ...]

    def __init__(self, *positional: int, **named: SizeValue) -> None:
        if len(positional) > len(SIZE_NAMES):
            raise InvalidArgument(f"Sizes takes at most {len(SIZE_NAMES)} positional sizes ({', '.join(SIZE_NAMES)})")
        values: dict[str, SizeValue] = dict(zip(SIZE_NAMES, positional))
        for name, value in named.items():
            if name in values:
                raise InvalidArgument(f"Sizes got {name}={value!r} twice")
            values[name] = value
        object.__setattr__(self, "_items", tuple(values.items()))

    # Any, not SizeValue: a size is an int where an assignment's shapes use it, which only the assignment knows.
    def __getattr__(self, name: str) -> Any:
        for key, value in object.__getattribute__(self, "_items"):
            if key == name:
                return value
        raise AttributeError(f"these sizes have no {name!r} (they have {', '.join(self.names) or 'none'})")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Sizes are immutable: use .replace(name=value)")

    def __getitem__(self, name: str) -> Any:
        try:
            return self.__getattr__(name)
        except AttributeError:
            raise KeyError(name) from None

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self._items)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self._items)

    def get(self, name: str, default: SizeValue | None = None) -> SizeValue | None:
        return self[name] if name in self else default

    def as_dict(self) -> dict[str, SizeValue]:
        return dict(self._items)

    def replace(self, **changes: SizeValue) -> Sizes:
        unknown = [n for n in changes if n not in self]
        if unknown:
            raise InvalidArgument(f"Sizes has no {unknown[0]!r} (it has {', '.join(self.names)})")
        return Sizes(**{**self.as_dict(), **changes})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sizes) and self._items == other._items

    def __lt__(self, other: Sizes) -> bool:
        return tuple(map(repr, self._items)) < tuple(map(repr, other._items))

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Sizes({', '.join(f'{k}={v!r}' for k, v in self._items)})"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (grade sends settings and cases between processes)
        return (_sizes_from_items, (self._items,))

    def describe(self) -> str:
        return ", ".join(f"{name}={_show(value)}" for name, value in self._items)


def _sizes_from_items(items: tuple[tuple[str, SizeValue], ...]) -> Sizes:
    return Sizes(**dict(items))


def _show(value: SizeValue) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Hyperparameter:
    """The domain of one hyperparameter: ``Hyperparameter.ints(1, 3)``, ``.floats(0.1, 0.9)``,
    ``.choices("max", "mean")``, ``.booleans()``. Drawn like a size, it shrinks towards ``low`` (ints), the simplest
    float in range, the first choice, and False."""

    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()

    @classmethod
    def ints(cls, low: int, high: int) -> Hyperparameter:
        for label, v in (("low", low), ("high", high)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise InvalidArgument(f"Hyperparameter.ints({label}={v!r}) must be an integer")
        if low > high:
            raise InvalidArgument(f"Hyperparameter.ints(low={low!r}, high={high!r}): low exceeds high")
        return cls("int", low, high)

    @classmethod
    def floats(cls, low: float, high: float) -> Hyperparameter:
        import math

        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)) \
                or low > high:
            raise InvalidArgument(f"Hyperparameter.floats(low={low!r}, high={high!r}) needs finite low <= high")
        return cls("float", float(low), float(high))

    @classmethod
    def choices(cls, *values: Any) -> Hyperparameter:
        if not values:
            raise InvalidArgument("Hyperparameter.choices() needs at least one value")
        return cls("choice", values=tuple(values))

    @classmethod
    def booleans(cls) -> Hyperparameter:
        return cls("bool")


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
        """The counterexample object of the JSON report (its schema is documented in the README): every size and
        hyperparameter by name (the seed's: batch, n_feature, n_hidden, n_output), then dtype, device, seed,
        scale and the data regime."""
        out: dict[str, Any] = self.sizes.as_dict()
        out.update(dtype=self.dtype, device=self.device, seed=self.seed, scale=self.scale, regime=self.regime)
        return out

    def replace(self, **changes: Any) -> Case:
        named = {name: changes.pop(name) for name in self.sizes.names if name in changes}
        base: dict[str, Any] = {"sizes": self.sizes.replace(**named), "dtype": self.dtype, "device": self.device,
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
    - ``numpy_only``: submissions are checked in numpy mode, in a worker that has no torch at all.
    - ``forward(**args, **hyperparameters)``: the reference forward (a layer's output, or a loss's value) in torch.
      With an ``adapter`` that defines ADAPTER_FORWARD_FUNCTION, the gate checks the submission's forward against
      it too (:func:`gradcheckers.property.check_forward`): a wrong forward makes the gradients meaningless.
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
    numpy_only: bool = False  # submissions run in numpy mode: a worker without torch (see Limits.numpy)
    # Named sizes: each name's (min, max), one fixed int, or a function of the others; None means the seed's four
    # (batch, n_feature, n_hidden, n_output) with the default bounds, fixed_sizes and min_sizes above.
    sizes: Mapping[str, Any] | None = None
    # Hyperparameters (Hyperparameter.ints/floats/choices/booleans, a Hypothesis strategy, or a fixed value): drawn,
    # shrunk and reported like sizes, and passed as keywords to loss, reference, the hooks and every submitted
    # function.
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    # The constraint between sizes and hyperparameters (``lambda s: s.pad < s.K``): cases that break it are never
    # drawn, nor tried by a diagnosis.
    constraint: Callable[[Sizes], bool] | None = None
    # Python source appended to a submission in its worker, defining ADAPTER_FUNCTION(*arguments, **hyper) that
    # returns a mapping of the parameters' gradients: how a layer assignment calls a course's forward/backward.
    adapter: str | None = None
    forward: Callable[..., Tensor] | None = None

    @property
    def arguments(self) -> tuple[str, ...]:
        return self.inputs + self.parameters

    def hyperparameter_values(self, case: Case) -> dict[str, Any]:
        """The case's hyperparameters by name (empty for an assignment without any)."""
        return {name: case.sizes[name] for name in self.hyperparameters}

    def bound(self, case: Case) -> Assignment:
        """This assignment with the case's hyperparameters bound as keywords of loss, reference and the hooks."""
        hyper = self.hyperparameter_values(case)
        if not hyper:
            return self

        def bind(hook: Callable[..., Any] | None) -> Callable[..., Any] | None:
            return None if hook is None else functools.partial(hook, **hyper)

        return replace(self, loss=functools.partial(self.loss, **hyper),
                       reference=functools.partial(self.reference, **hyper), autograd=bind(self.autograd),
                       finite_differences=bind(self.finite_differences), rounding=bind(self.rounding),
                       kinks=bind(self.kinks), hyperparameters={})

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
    values = list(case.sizes.as_dict().values())  # every named size and hyperparameter, in the sizes' order
    if all(value == 1 for value in values):
        return case.seed  # the smallest case keeps the plain seed: `manual_seed(seed)` reproduces it by hand
    text = f"{case.seed}:{','.join(str(value) for value in values)}"
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
# The layer pack (gradcheckers.models.layers.LAYERS, each a layer.Layer turned into an assignment on first use).
LAYER_NAMES = ("affine", "relu", "leaky-relu", "sigmoid", "tanh", "softmax-loss", "svm-loss", "word2vec-naive-softmax",
               "batchnorm", "layernorm", "dropout", "conv", "maxpool", "rnn-step")
_BUILTIN.update({name: f"gradcheckers.models.layers:{name}" for name in LAYER_NAMES})
DEFAULT_ASSIGNMENT = "two-layer-sigmoid"
# The function an assignment's ``adapter`` defines in the submission's namespace.
ADAPTER_FUNCTION = "_gradcheckers_gradients"
# The function an adapter defines for the submission's forward output, (*arguments, **hyper) -> output.
ADAPTER_FORWARD_FUNCTION = "_gradcheckers_forward"
COMPLEX_STEP_SUFFIX = "+complex-step"
# Spec suffixes that turn an assignment into another, each found by name like the bundled assignments (the
# modules that define them build on this one, so this one never imports them).
_SUFFIXES = {COMPLEX_STEP_SUFFIX: "gradcheckers.complex_step:with_complex_step"}


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
    for suffix, target in _SUFFIXES.items():
        if spec.endswith(suffix):
            where, _, transform = target.partition(":")
            result = getattr(importlib.import_module(where), transform)(spec[: -len(suffix)])
            assert isinstance(result, Assignment)
            return result
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
