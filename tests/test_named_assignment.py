"""Assignments with named sizes, hyperparameters and constraints (issue 11, item 4), checked in process."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor

from gradcheckers import Assignment, Hyperparameter, InvalidArgument, Sizes, check_formulas
from gradcheckers.strategies import cases, named_sizes


def _shapes(s: Sizes) -> dict[str, tuple[int, ...]]:
    return {"X": (s.N, s.D), "W": (s.D, s.M)}


def _draw(s: Sizes, generator: torch.Generator, scale: float = 1.0) -> dict[str, Tensor]:
    return {k: torch.randn(*shape, generator=generator, dtype=torch.float64) * scale for k, shape in _shapes(s).items()}


def _loss(X: Tensor, W: Tensor, reg: float, power: int) -> Tensor:
    return ((X @ W) ** 2).sum() + reg * (W.abs() ** power).sum()


def _gradients(X: Tensor, W: Tensor, reg: float, power: int) -> dict[str, Tensor]:
    return {"W": 2 * X.T @ (X @ W) + reg * power * W.abs() ** (power - 1) * W.sign()}


RIDGE = Assignment(
    name="named-ridge",
    title="||X W||^2 + reg * sum |W|^power",
    inputs=("X",),
    parameters=("W",),
    shapes=_shapes,
    draw=_draw,
    loss=_loss,
    reference=_gradients,
    sizes={"N": (1, 5), "D": (1, 3), "M": (1, 3)},
    hyperparameters={"reg": Hyperparameter.floats(0.0, 2.0), "power": Hyperparameter.choices(2, 4)},
    constraint=lambda s: s.N >= s.D,  # more samples than features
)


def test_a_correct_formula_gets_the_hyperparameters_as_keywords_and_passes() -> None:
    result = check_formulas({"W": lambda X, W, reg, power: _gradients(X, W, reg, power)["W"]}, assignment=RIDGE,
                            max_examples=60)
    assert result.passed, result.parameters["W"].message


def test_a_forgotten_regularizer_fails_on_the_smallest_case_with_the_hyperparameter_named() -> None:
    result = check_formulas({"W": lambda X, W, reg, power: 2 * X.T @ (X @ W)}, assignment=RIDGE, max_examples=60)
    failure = result.parameters["W"]
    assert not failure.passed and failure.counterexample is not None
    sizes = failure.counterexample.sizes
    assert (sizes.N, sizes.D, sizes.M) == (1, 1, 1) and sizes.reg > 0 and sizes.power == 2
    report = failure.to_json()["counterexample"]
    assert list(report)[:5] == ["N", "D", "M", "reg", "power"] and report["power"] == 2
    assert list(report)[5:] == ["dtype", "device", "seed", "scale", "regime"]
    json.dumps(report)


def test_the_constraint_holds_in_every_drawn_case() -> None:
    from hypothesis import given, settings

    @settings(max_examples=200, derandomize=True, database=None)
    @given(cases(RIDGE))
    def run(case: object) -> None:
        sizes = case.sizes  # type: ignore[attr-defined]
        assert sizes.N >= sizes.D and sizes.power in (2, 4) and 0.0 <= sizes.reg <= 2.0

    run()


def test_size_bounds_override_an_assignment_s_own_and_unknown_names_are_refused() -> None:
    formula = {"W": lambda X, W, reg, power: _gradients(X, W, reg, power)["W"]}
    result = check_formulas(formula, assignment=RIDGE, max_examples=10, size_bounds={"N": (4, 4)})
    assert result.passed
    with pytest.raises(InvalidArgument, match="'depth'"):
        check_formulas(formula, assignment=RIDGE, max_examples=10, size_bounds={"depth": (1, 2)})


@pytest.mark.parametrize(
    ("call", "text"),
    [
        pytest.param(lambda: named_sizes({"N": (0, 2)}), "min_N=0", id="zero"),
        pytest.param(lambda: named_sizes({"N": (3, 2)}), "min_N=3", id="reversed"),
        pytest.param(lambda: named_sizes({"N": "big"}), "sizes['N']='big'", id="not-a-pair"),
        pytest.param(lambda: named_sizes({"N": 2}, {"N": 1}), "hyperparameter name 'N'", id="twice"),
        pytest.param(lambda: Hyperparameter.ints(3, 1), "low exceeds high", id="int-range"),
        pytest.param(lambda: Hyperparameter.floats(0.0, float("nan")), "finite low <= high", id="float-nan"),
        pytest.param(lambda: Hyperparameter.choices(), "at least one value", id="no-choices"),
        pytest.param(lambda: Sizes(1, 2, 3, 4, 5), "at most 4 positional", id="too-many"),
    ],
)
def test_bad_sizes_and_hyperparameters_are_one_line_errors(call: object, text: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        call()  # type: ignore[operator]
    assert text in str(error.value)


def test_sizes_are_an_immutable_ordered_mapping_and_the_seed_s_four_still_come_by_position() -> None:
    seed = Sizes(2, 3, 4, 1)
    assert seed.batch == 2 and seed["n_output"] == 1 and seed.names == ("batch", "n_feature", "n_hidden", "n_output")
    named = Sizes(N=2, stride=2, mode="max", bias=True)
    assert named.describe() == "N=2, stride=2, mode=max, bias=True"
    assert named.replace(N=3) == Sizes(N=3, stride=2, mode="max", bias=True)
    assert hash(named) == hash(Sizes(**named.as_dict()))
    with pytest.raises(AttributeError):
        named.N = 5  # type: ignore[misc]
    import pickle

    assert pickle.loads(pickle.dumps(named)) == named
