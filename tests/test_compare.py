"""The verdict (compare.judge, assert_gradients_agree): exact shapes, finite values, accepted and refused
return types, user tolerances, and a mismatch message as informative as torch.testing.assert_close's."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from formulas.wrong import BY_NAME

from gradcheckers import (
    AgreementResult,
    Case,
    GradientMismatchError,
    InconclusiveWarning,
    InvalidArgument,
    ParameterAgreement,
    Sizes,
    Tolerance,
    assert_gradients_agree,
    check_formulas,
)
from gradcheckers.compare import Verdict, WorstElement, judge

F64 = torch.float64


def _judge(parameter: str, value: object, reference: torch.Tensor, dtype=F64, **kwargs) -> Verdict:
    """Judge ``value`` against a reference that autograd and finite differences agree on exactly."""
    reference = reference.to(F64)
    return judge(
        parameter,
        value,
        tuple(reference.shape),
        reference,
        reference.clone(),
        torch.full_like(reference, 1e-9),
        torch.zeros_like(reference),
        dtype,
        **kwargs,
    )


# --------------------------------------------------------------------------------------------------------
# Shapes: exactly the parameter's, never broadcast


def test_the_seed_s_1_by_20_bias_gradient_fails_although_allclose_broadcasts_it_to_a_match() -> None:
    reference = torch.linspace(-1, 1, 20, dtype=F64)
    submitted = reference[None, :].clone()  # (1, 20): the right numbers with a batch axis
    assert torch.allclose(submitted, reference)  # what the homework checked

    verdict = _judge("b1", submitted, reference)

    assert (verdict.status, verdict.reason) == ("fail", "shape")
    assert verdict.summary == (
        "the gradient of b1 returned shape (1, 20); b1 has shape (20,). The gradient must have exactly the "
        "parameter's shape; a comparison that broadcasts one against the other hides the error. The extra "
        "leading axis of size 1 looks like the batch: sum over it (dim 0)."
    )


@pytest.mark.parametrize(
    ("submitted", "expected", "hint"),
    [
        # The seed's transposed b2, -2 * (Y - Y_pred).t(): the batch is the last axis, not dim 0.
        ((3, 5), (3,), " The extra trailing axis of size 5 looks like the batch, after a transpose: sum over it "
                       "(dim 1), or sum over dim 0 before transposing."),
        ((1, 1), (1,), " It has one axis too many: sum the per-sample terms over the batch axis, which is the last "
                       "axis if the result was transposed (e.g. (Y - Y_pred).t())."),
        ((2, 3), (3, 2), " It is the transpose of the expected shape."),
        ((4, 3, 2), (3, 2), " The extra leading axis of size 4 looks like the batch: sum over it (dim 0)."),
        ((), (1,), ""),
        ((6,), (2, 3), ""),
    ],
)
def test_a_wrong_shape_fails_with_a_hint_where_one_applies(submitted: tuple, expected: tuple, hint: str) -> None:
    verdict = _judge("p", torch.zeros(submitted, dtype=F64), torch.zeros(expected, dtype=F64))
    assert (verdict.status, verdict.reason) == ("fail", "shape")
    assert verdict.summary.endswith(f"hides the error.{hint}")
    assert f"returned shape {submitted}; p has shape {expected}." in verdict.summary


# --------------------------------------------------------------------------------------------------------
# Values: finite numbers, numpy accepted, anything else refused


def test_nan_and_inf_are_non_finite_failures_with_the_first_index() -> None:
    verdict = _judge("b", torch.tensor([1.0, float("inf"), float("nan")]), torch.ones(3), dtype=torch.float32)
    assert (verdict.status, verdict.reason) == ("fail", "non-finite")
    assert verdict.summary.startswith(
        "the gradient of b returned 2 non-finite value(s) of 3 where the exact gradient is finite (first inf at "
        "index (1,), where autograd gives 1.0)."
    )


def test_a_nan_where_autograd_gives_nan_too_is_not_blamed_on_the_formula() -> None:
    """Observed: 'the exact gradient is finite here (autograd gives nan)'. Where the reference is NaN nothing
    can be said: the element is inconclusive, and a NaN elsewhere is still a failure."""
    reference = torch.tensor([1.0, float("nan")], dtype=F64)
    verdict = _judge("b", torch.tensor([1.0, float("nan")], dtype=F64), reference)
    assert verdict.status == "inconclusive"
    verdict = _judge("b", torch.tensor([float("nan"), float("nan")], dtype=F64), reference)
    assert (verdict.status, verdict.reason) == ("fail", "non-finite")
    assert "1 non-finite value(s) of 2 where the exact gradient is finite (first nan at index (0,)" in verdict.summary


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_a_numpy_array_is_accepted_and_converted(dtype: type) -> None:
    reference = torch.tensor([[2.0, -4.0], [6.0, 0.0]], dtype=F64)
    assert _judge("W", reference.numpy().astype(dtype), reference).status == "pass"


def test_a_tensor_that_requires_grad_is_accepted() -> None:
    reference = torch.tensor([1.0, 2.0], dtype=F64)
    assert _judge("b", reference.clone().requires_grad_(True), reference).status == "pass"


@pytest.mark.parametrize(
    ("value", "summary"),
    [
        ([1.0, 2.0], "the gradient of b returned list; expected a torch.Tensor or numpy.ndarray"),
        (
            None,
            "the gradient of b returned NoneType (did you forget a return statement?); expected a torch.Tensor "
            "or numpy.ndarray",
        ),
        (2.0, "the gradient of b returned float; expected a torch.Tensor or numpy.ndarray"),
        (np.array(["a", "b"]), "the gradient of b returned a numpy array of dtype <U1, not numbers"),
        (
            torch.ones(2, dtype=torch.complex64),
            "the gradient of b returned a tensor of dtype torch.complex64, expected floats",
        ),
    ],
    ids=["list", "None", "float", "numpy-strings", "complex"],
)
def test_anything_but_a_tensor_or_numeric_array_is_an_error_with_a_clear_message(value: object, summary: str) -> None:
    verdict = _judge("b", value, torch.ones(2, dtype=F64))
    assert (verdict.status, verdict.reason, verdict.summary) == ("fail", "error", summary)


def _only(mistake: str, dtype: str = "float64"):
    m = BY_NAME[mistake]
    result = check_formulas(
        {name: m.formulas[name] for name in m.failing}, parameters=m.failing, max_examples=20, dtypes=(dtype,)
    )
    return result.parameters[m.failing[0]]


def test_an_exception_in_a_formula_is_that_parameter_s_error_with_where_it_was_raised() -> None:
    r = _only("raises")
    assert r.reason == "error"
    assert r.message is not None
    summary = r.message.splitlines()[0]
    assert summary.startswith("grad_W1 raised ValueError: not implemented yet (at ")
    assert summary.endswith("tests/formulas/wrong.py:" + summary.rsplit(":", 1)[1])


def test_an_in_place_change_of_an_input_is_a_mutated_input_failure() -> None:
    r = _only("mutates-input")
    assert r.reason == "mutated-input"
    assert r.message is not None and r.message.startswith("grad_b2 modified its input(s) Y in place; ")


def test_the_mutated_input_failure_names_the_argument() -> None:
    r = _only("mutates-input")
    assert r.message is not None and "Y" in r.message


# --------------------------------------------------------------------------------------------------------
# Tolerances


def test_a_user_rtol_and_atol_replace_the_policy() -> None:
    reference = torch.tensor([1.0, -2.0, 4.0], dtype=F64)
    off = reference * (1 + 1e-3)
    assert _judge("b", off, reference).status == "fail"  # the policy: float64 rounding only
    assert _judge("b", off, reference, tolerance=Tolerance(rtol=1e-2, atol=0.0)).status == "pass"
    assert _judge("b", off, reference, tolerance=Tolerance(rtol=0.0, atol=1e-2)).status == "pass"
    verdict = _judge("b", off, reference, tolerance=Tolerance(rtol=1e-4, atol=1e-6))
    assert verdict.worst is not None and verdict.worst.allowed == pytest.approx(1e-6 + 1e-4 * 4.0)


def test_check_formulas_honours_a_user_tolerance() -> None:
    formulas = BY_NAME["relative-error-1e-3"].formulas
    assert not check_formulas(formulas, parameters=["b2"], max_examples=20).passed
    assert check_formulas(formulas, parameters=["b2"], max_examples=20, rtol=1e-2, atol=1e-9).passed


@pytest.mark.parametrize(("rtol", "atol"), [(1e-3, None), (None, 1e-6)])
def test_rtol_and_atol_must_come_together(rtol: float | None, atol: float | None) -> None:
    with pytest.raises(InvalidArgument, match=f"rtol={rtol!r}, atol={atol!r}: give both or neither"):
        assert_gradients_agree(
            lambda w: (w**2).sum(), {"w": torch.ones(2)}, {"w": 2 * torch.ones(2)}, rtol=rtol, atol=atol
        )
    with pytest.raises(InvalidArgument, match="give both or neither"):
        check_formulas(BY_NAME["sign-error"].formulas, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------------------------
# The mismatch message


def test_the_mismatch_message_has_counts_greatest_differences_worst_element_shape_dtype_and_context() -> None:
    reference = torch.tensor([[0.1, 2.0], [3.0, -4.0]], dtype=F64)
    submitted = torch.tensor([[0.2, 2.5], [3.0, -4.0]], dtype=F64)

    verdict = _judge("W", submitted, reference, tolerance=Tolerance(rtol=0.01, atol=0.0), context="Case: demo")

    assert (verdict.status, verdict.reason) == ("fail", "mismatch")
    assert verdict.message.splitlines() == [
        "the gradient of W disagrees with autograd and finite differences (which agree with each other) on 2 of 4 "
        "element(s)",
        "Mismatched elements: 2 / 4 (50.0%)",
        "Greatest absolute difference: 0.5 at index (0, 1) (up to 0.02 allowed)",
        "Greatest relative difference: 1.0 at index (0, 0) (up to 0.01 allowed)",
        "Worst element (0, 1): analytic 2.5, autograd 2.0, finite differences 2.0 (+-1e-09)",
        "Shape (2, 2), judged in torch.float64 (references in float64)",
        "Case: demo",
    ]
    assert verdict.worst == WorstElement((0, 1), 2.5, 2.0, 2.0, 1e-9, 0.02)


def test_a_property_check_mismatch_message_describes_the_case() -> None:
    r = _only("sign-error", "float32")
    assert r.message is not None
    lines = r.message.splitlines()
    assert lines[0] == (
        "the gradient of W2 disagrees with autograd and finite differences (which agree with each other) on 1 of 1 "
        "element(s)"
    )
    assert [line.split(":")[0] for line in lines[1:4]] == [
        "Mismatched elements",
        "Greatest absolute difference",
        "Greatest relative difference",
    ]
    assert lines[4].startswith("Worst element (0, 0): analytic ")
    assert lines[5] == "Shape (1, 1), judged in torch.float32 (references in float64)"
    assert lines[6] == f"Case: {Case(Sizes(1, 1, 1, 1), dtype='float32').describe()}"
    assert r.worst is not None and r.worst.analytic == pytest.approx(-r.worst.autograd, rel=1e-6)


# --------------------------------------------------------------------------------------------------------
# assert_gradients_agree on a loss that is not the two-layer model


def _softmax_regression(dtype: torch.dtype = F64) -> tuple[object, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Cross-entropy of a linear classifier, its data and parameters in ``dtype``, and the exact gradients."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=generator, dtype=F64).to(dtype)
    labels = torch.tensor([0, 2, 1, 2, 0, 1])
    W = torch.randn(4, 3, generator=generator, dtype=F64).to(dtype)
    b = torch.randn(3, generator=generator, dtype=F64).to(dtype)

    def loss(W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(x @ W + b, labels, reduction="sum")

    G = torch.softmax(x @ W + b, 1) - torch.nn.functional.one_hot(labels, 3).to(dtype)
    return loss, {"W": W, "b": b}, {"W": x.T @ G, "b": G.sum(0)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_assert_gradients_agree_passes_a_correct_gradient_of_a_generic_loss(dtype: torch.dtype) -> None:
    loss, params, grads = _softmax_regression(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconclusiveWarning)
        assert_gradients_agree(loss, params, grads)


def test_assert_gradients_agree_accepts_numpy_gradients() -> None:
    loss, params, grads = _softmax_regression()
    assert_gradients_agree(loss, params, {k: v.numpy() for k, v in grads.items()})


def test_assert_gradients_agree_fails_a_wrong_gradient_naming_only_that_parameter() -> None:
    loss, params, grads = _softmax_regression()
    with pytest.raises(GradientMismatchError) as info:
        assert_gradients_agree(loss, params, {"W": grads["W"], "b": -grads["b"]})
    assert isinstance(info.value, AssertionError)
    assert str(info.value).startswith("the gradient of b disagrees with autograd and finite differences")
    assert "the gradient of W" not in str(info.value)


def test_assert_gradients_agree_mismatch_message_names_the_device() -> None:
    loss, params, grads = _softmax_regression()
    with pytest.raises(GradientMismatchError, match="cpu"):
        assert_gradients_agree(loss, params, {"W": grads["W"], "b": -grads["b"]})


def test_assert_gradients_agree_refuses_bad_arguments() -> None:
    loss, params, grads = _softmax_regression()
    with pytest.raises(InvalidArgument, match=r"analytic has no gradient for \['b'\]"):
        assert_gradients_agree(loss, params, {"W": grads["W"]})
    with pytest.raises(InvalidArgument, match=r"params\['n'\]=Tensor must be a floating-point tensor"):
        assert_gradients_agree(loss, {**params, "n": torch.arange(3)}, {**grads, "n": torch.zeros(3)})
    with pytest.raises(InvalidArgument, match=r"params=\{\} must be a non-empty mapping"):
        assert_gradients_agree(loss, {}, {})


def _large_problem() -> tuple[object, dict[str, torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    W = torch.randn(100, 100, generator=generator, dtype=F64)  # 10^4 elements: the random-direction path
    x = torch.randn(100, generator=generator, dtype=F64)

    def loss(W: torch.Tensor) -> torch.Tensor:
        return 0.5 * (W**2).sum() + torch.tanh(W @ x).sum()

    grad = W + torch.outer(1 - torch.tanh(W @ x) ** 2, x)
    return loss, {"W": W}, grad


def test_a_large_parameter_with_a_correct_gradient_passes_along_random_directions() -> None:
    loss, params, grad = _large_problem()
    assert_gradients_agree(loss, params, {"W": grad})


def test_a_single_wrong_element_of_ten_thousand_is_caught_along_random_directions() -> None:
    loss, params, grad = _large_problem()
    wrong = grad.clone()
    wrong[37, 59] += 0.01

    # The wrong element is in 4 of the 64 directions (DIRECTION_COVER), and each of them shows it.
    with pytest.raises(GradientMismatchError, match=r"^the gradient of W \(along 64 random directions\) disagrees "
                       r"with autograd and finite differences \(which agree with each other\) on 4 of 64 element"):
        assert_gradients_agree(loss, params, {"W": wrong})


@pytest.mark.parametrize(("k", "cover"), [(64, 4), (16, 4), (6, 4), (4, 4), (1, 1)])
def test_each_element_is_in_four_random_directions(k: int, cover: int) -> None:
    from gradcheckers.compare import random_directions

    d = random_directions(k, torch.Size([30, 7]), torch.Generator().manual_seed(k))
    assert d.shape == (k, 30, 7) and d.dtype == torch.float64
    assert ((d != 0).sum(0) == cover).all()  # normal weights are never exactly 0
    if k >= 16:
        assert (d != 0).sum((1, 2)).min() > 0  # every direction goes through some elements


def test_a_large_parameter_of_the_wrong_shape_fails_on_its_shape() -> None:
    loss, params, grad = _large_problem()
    with pytest.raises(GradientMismatchError, match=r"returned shape \(10000,\); W has shape \(100, 100\)"):
        assert_gradients_agree(loss, params, {"W": grad.reshape(-1)})


def test_where_the_references_disagree_the_verdict_is_inconclusive_and_only_warns() -> None:
    """relu at its kink: autograd says 0, central differences 0.5; nothing can be said about the formula. (The
    kink is at the parameter's own value, which any computation receives exactly: the references' disagreement,
    not the rounding model, is what makes it undecidable.)"""
    with pytest.warns(InconclusiveWarning, match=r"^w: autograd and finite differences disagree on 1 of 1 element"):
        result = assert_gradients_agree(
            lambda w: torch.relu(w).sum(), {"w": torch.zeros(1, dtype=F64)}, {"w": torch.zeros(1, dtype=F64)}
        )
    assert result.passed
    assert (result.parameters["w"].status, result.parameters["w"].checked, result.parameters["w"].inconclusive) == (
        "inconclusive", 0, 1)


def test_a_wrong_gradient_fails_even_where_the_loss_value_is_zero() -> None:
    w = torch.ones(3, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InconclusiveWarning)
        with pytest.raises(GradientMismatchError):
            assert_gradients_agree(lambda w: (w**2).sum() - 3, {"w": w}, {"w": 5 * torch.ones(3, dtype=F64)})


# --------------------------------------------------------------------------------------------------------
# The result object, the dtype judged, and the digits printed


def test_assert_gradients_agree_returns_counts_and_the_element_closest_to_its_allowance() -> None:
    loss, params, grads = _softmax_regression()
    result = assert_gradients_agree(loss, params, grads)
    assert isinstance(result, AgreementResult) and result.passed and result.inconclusive == 0
    w = result.parameters["W"]
    assert isinstance(w, ParameterAgreement)
    assert (w.status, w.dtype, w.checked, w.inconclusive) == ("pass", F64, 12, 0)
    assert w.worst is not None and 0 <= w.ratio <= 1
    assert abs(w.worst.analytic - w.worst.autograd) <= w.worst.allowed


def test_a_float32_gradient_of_float64_parameters_is_judged_in_float32_and_the_message_says_so() -> None:
    """Observed: judged at float64 tolerance (770 of 1,395 operator samples failed) and reported as 'analytic
    dtype torch.float64'."""
    loss, params, grads = _softmax_regression()
    result = assert_gradients_agree(loss, params, {k: v.float() for k, v in grads.items()})
    assert result.passed and result.parameters["W"].dtype == torch.float32
    wrong = {"W": grads["W"].float(), "b": (grads["b"] * 1.01).float()}
    with pytest.raises(GradientMismatchError) as info:
        assert_gradients_agree(loss, params, wrong)
    assert "judged in torch.float32: the analytic gradient's dtype (the parameter is torch.float64)" in str(info.value)


def test_messages_print_every_digit_that_tells_the_values_apart() -> None:
    reference = torch.tensor([1.0], dtype=F64)
    verdict = _judge("b", torch.tensor([1.0 + 2e-15], dtype=F64), reference)
    assert verdict.status == "fail"
    assert "analytic 1.000000000000002, autograd 1.0" in verdict.message


def test_an_analytic_exact_zero_passes_where_autograd_returns_a_rounding_residue() -> None:
    """Observed: an analytic value of exactly 0 blamed because autograd returned -1.1e-16 (the allowance of
    an exactly-cancelling element collapsed to ~1e-29)."""
    x = torch.tensor([[0.3, -1.2, 2.5], [1.0, 0.7, -0.4]], dtype=F64)
    dy = torch.ones(2, 3, dtype=F64)  # softmax's gradient along a constant upstream is exactly 0
    result = assert_gradients_agree(lambda x: (torch.softmax(x, -1) * dy).sum(), {"x": x},
                                    {"x": torch.zeros_like(x)})
    assert result.passed and result.parameters["x"].checked == 6
