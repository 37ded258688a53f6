"""The complex step agrees with autograd to a few ulps where it applies, and refuses where it does not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from gradcheckers.models import two_layer
from hypothesis import given, settings
from torch import Tensor

from gradcheckers import strategies
from gradcheckers.assignment import Case, Sizes, get_assignment
from gradcheckers.complex_step import complex_step_gradients, with_complex_step
from gradcheckers.errors import InvalidArgument
from gradcheckers.property import check_formulas
from gradcheckers.references import compute_references

TEMPLATE = Path(__file__).resolve().parents[1] / "gradcheckers" / "examples" / "assignments" / "template.py"
U64 = 2.0**-53
# The agreement reached (see the report): on 300 Hypothesis cases of each, |complex step - autograd| stayed
# below 4.3e-13 (sigmoid) and 9e-10 (tanh) of the tensor's largest entry, where central differences reach
# 1.6e-7 and 3e-4, and below 0.5 u * rounding (the rounding analysis of a correct float64 computation).
MAX_RELATIVE_TO_LARGEST = 1e-11


@settings(max_examples=40)
@given(strategies.cases("two-layer-sigmoid"))
def test_the_complex_step_agrees_with_autograd_to_rounding(case: Case) -> None:
    assignment = get_assignment("two-layer-sigmoid")
    args = assignment.tensors(case)
    cs = complex_step_gradients(assignment, args)
    refs = compute_references(assignment, args)
    assert refs.rounding is not None
    for name in assignment.parameters:
        difference = (cs[name] - refs.autograd[name]).abs()
        largest = refs.autograd[name].abs().max()
        assert float(difference.max()) <= MAX_RELATIVE_TO_LARGEST * float(largest) + 1e-300
        assert bool((difference <= U64 * refs.rounding[name]).all())  # within one correct computation's error


def test_the_complex_step_is_far_tighter_than_finite_differences() -> None:
    assignment = get_assignment("two-layer-tanh")
    args = assignment.tensors(Case(Sizes(32, 4, 16, 3), seed=7))
    cs = complex_step_gradients(assignment, args)
    refs = compute_references(assignment, args)
    for name in assignment.parameters:
        largest = float(refs.autograd[name].abs().max())
        cs_error = float((cs[name] - refs.autograd[name]).abs().max()) / largest
        fd_error = float((refs.finite_differences[name] - refs.autograd[name]).abs().max()) / largest
        assert cs_error < 1e-13, (name, cs_error)
        if name in ("W1", "b1"):  # the loss is quadratic in W2 and b2: there the differences are exact too
            assert cs_error < fd_error / 100, (name, cs_error, fd_error)


@pytest.mark.parametrize("name", ["two-layer-relu", "two-layer-mse-mean", "softmax-classifier", "logistic-regression"])
def test_non_holomorphic_assignments_are_refused_with_the_reason(name: str) -> None:
    assignment = get_assignment(name)
    args = assignment.tensors(Case(Sizes(2, 2, 2, 2)))
    with pytest.raises(InvalidArgument, match=rf"assignment='{name}' is not holomorphic.*abs, max, relu, clamp and "
                                              r"mse_loss are not"):
        complex_step_gradients(assignment, args)
    with pytest.raises(InvalidArgument, match="is not holomorphic"):
        with_complex_step(name)


def test_a_loss_declared_holomorphic_that_drops_the_imaginary_part_is_refused() -> None:
    def abs_loss(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
        return (Y - two_layer.forward(X, W1, b1, W2, b2)[2]).abs().sum()

    lying = dataclasses.replace(two_layer.SIGMOID, name="abs-declared-holomorphic", loss=abs_loss)
    args = lying.tensors(Case(Sizes(2, 1, 2, 1)))
    with pytest.raises(InvalidArgument, match=r"returned a real torch\.float64 from complex inputs"):
        complex_step_gradients(lying, args)


def test_a_loss_without_complex_kernels_is_refused() -> None:
    def mse(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
        return torch.nn.functional.mse_loss(two_layer.forward(X, W1, b1, W2, b2)[2], Y, reduction="sum")

    lying = dataclasses.replace(two_layer.SIGMOID, name="mse-declared-holomorphic", loss=mse)
    with pytest.raises(InvalidArgument, match="does not run on complex tensors"):
        complex_step_gradients(lying, lying.tensors(Case(Sizes(2, 1, 2, 1))))


def test_bad_steps_are_refused() -> None:
    args = two_layer.SIGMOID.tensors(Case(Sizes(1, 1, 1, 1)))
    with pytest.raises(InvalidArgument, match=r"step=0\.1 must be a float in"):
        complex_step_gradients(two_layer.SIGMOID, args, step=0.1)


def test_the_template_is_holomorphic_and_exact() -> None:
    assignment = get_assignment(str(TEMPLATE))
    args = assignment.tensors(Case(Sizes(5, 3, 1, 2), seed=1))
    cs = complex_step_gradients(assignment, args)
    exact = assignment.reference(**{k: v.double() for k, v in args.items()})
    for name in assignment.parameters:
        assert torch.allclose(cs[name], exact[name], rtol=1e-14, atol=1e-13)


def test_with_complex_step_checks_formulas_with_a_near_exact_second_reference() -> None:
    checked = with_complex_step("two-layer-sigmoid")
    assert checked.name == "two-layer-sigmoid+complex-step"
    args = checked.tensors(Case(Sizes(8, 3, 5, 2), seed=3))
    refs = compute_references(checked, args)
    for name in checked.parameters:
        relative_error = refs.fd_error[name].max() / refs.autograd[name].abs().max()
        assert float(relative_error) < 1e-12  # vs ~1e-8 for central differences
    result = check_formulas(two_layer.SIGMOID.reference, assignment=checked, max_examples=30, seed=0, stress=True)
    assert result.passed, {p: r.message for p, r in result.parameters.items() if not r.passed}
    assert all(r.inconclusive == 0 for r in result.parameters.values())

    def b2_mean(X, Y, W1, b1, W2, b2):
        return two_layer.gradients(X, Y, W1, b1, W2, b2)["b2"] / X.shape[0]

    wrong = check_formulas({"b2": b2_mean}, assignment=checked, parameters=["b2"], max_examples=20, seed=0)
    assert not wrong.passed and wrong.parameters["b2"].reason == "mismatch"


def test_overflowing_complex_evaluations_fall_back_to_finite_differences() -> None:
    checked = with_complex_step("two-layer-sigmoid")
    args = checked.tensors(Case(Sizes(4, 2, 3, 1), seed=2, scale=1000.0))
    refs = compute_references(checked, args)
    for name in checked.parameters:
        assert bool(torch.isfinite(refs.finite_differences[name]).all())


def test_a_complex_step_suffix_selects_it_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    from gradcheckers.cli import main

    assert get_assignment("two-layer-tanh+complex-step").name == "two-layer-tanh+complex-step"
    with pytest.raises(InvalidArgument, match="'two-layer-relu' is not holomorphic"):
        get_assignment("two-layer-relu+complex-step")
    code = main(["check", "correct", "--assignment", "two-layer-sigmoid+complex-step", "--examples", "10", "--quiet"])
    assert code == 0, capsys.readouterr().out
