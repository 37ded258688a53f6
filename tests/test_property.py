"""The property check (check_formulas): deterministic, seed-independent minimal counterexamples, diagnoses,
example counts, the submission conventions, and inconclusive cases that never fail a formula."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Mapping

import pytest
import torch
from formulas.wrong import BY_NAME
from gradcheckers.models import seed as seed_formulas
from gradcheckers.models import two_layer
from gradcheckers.models.two_layer import PARAMETERS

from gradcheckers import Assignment, Case, ParameterResult, Sizes, check_formulas, formulas_from_namespace

SEED_FORMULAS = formulas_from_namespace(vars(seed_formulas), PARAMETERS)
CORRECT = formulas_from_namespace(vars(two_layer), PARAMETERS)
SEED_COUNTEREXAMPLES = {"W1": Case(Sizes(2, 1, 1, 1)), "b1": Case(Sizes(1, 1, 1, 1)), "b2": Case(Sizes(1, 1, 1, 1))}


def _counterexamples(result) -> dict[str, Case | None]:
    return {name: r.counterexample for name, r in result.parameters.items() if not r.passed}


# --------------------------------------------------------------------------------------------------------
# Determinism and seeds


def test_the_same_seed_gives_the_identical_json_report() -> None:
    first = check_formulas(SEED_FORMULAS, max_examples=50, seed=3)
    second = check_formulas(SEED_FORMULAS, max_examples=50, seed=3)
    assert json.dumps(first.to_json(), allow_nan=False) == json.dumps(second.to_json(), allow_nan=False)
    assert first.to_json()["seed"] == 3


@pytest.mark.parametrize("seed", [1, 2024, 2**31 - 1])
def test_another_seed_finds_the_same_minimal_counterexamples_for_the_seed_formulas(seed: int) -> None:
    result = check_formulas(SEED_FORMULAS, max_examples=100, seed=seed, dtypes=("float64",))
    assert _counterexamples(result) == SEED_COUNTEREXAMPLES
    assert result.parameters["W2"].passed


def test_the_json_report_has_the_documented_fields() -> None:
    report = check_formulas(SEED_FORMULAS, max_examples=20).to_json()
    assert list(report) == ["passed", "seed", "assignment", "parameters"]
    assert (report["passed"], report["assignment"], list(report["parameters"])) == (
        False,
        "two-layer-sigmoid",
        list(PARAMETERS),
    )
    assert report["parameters"]["b1"]["counterexample"] == Case(Sizes(1, 1, 1, 1)).to_json()
    assert set(report["parameters"]["W2"]) == {
        "passed",
        "examples",
        "inconclusive",
        "reason",
        "message",
        "counterexample",
        "worst",
        "diagnosis",
        "snippet",
    }


# --------------------------------------------------------------------------------------------------------
# Diagnoses: a hint next to the verdict

BATCH_HINT = (
    "right for a batch of 1 and wrong for larger batches: the per-sample terms are not summed over the batch "
    "(a bias gradient sums over dim 0; in X.T @ (...) the whole per-sample term must be inside the product), or "
    "they are averaged instead of summed"
)


@pytest.mark.parametrize(
    ("mistake", "diagnosis"),
    [
        ("seed-W1-precedence", BATCH_HINT),
        ("batch-mean", "batch"),  # at batch 2 and one output a batch mean is also a mean over batch * n_output
        ("sign-error", "a constant factor -1 off: the sign is flipped"),
        ("missing-factor-2", "a constant factor 0.5 off: a factor 2 is missing (d/dx of x^2 is 2x)"),
        (
            "first-feature-only",
            "right for one input feature and wrong for several: look for X used where X.T is needed, or a single "
            "column of X",
        ),
        ("relative-error-1e-3", "constant factor 1.001"),
    ],
)
def test_the_diagnosis_names_the_likely_cause(mistake: str, diagnosis: str) -> None:
    m = BY_NAME[mistake]
    result = check_formulas(m.formulas, parameters=m.failing[:1], max_examples=100, dtypes=("float64",))
    assert diagnosis in (result.parameters[m.failing[0]].diagnosis or "")


@pytest.mark.parametrize("mistake", ["b1-missing-batch-sum", "returns-nan", "python-list"])
def test_no_diagnosis_is_guessed_where_the_message_already_says_it_all(mistake: str) -> None:
    """A shape failure at batch 1 (the message says "sum over it"), NaN, or a list: nothing smaller to try."""
    m = BY_NAME[mistake]
    result = check_formulas(m.formulas, parameters=m.failing, max_examples=20, dtypes=("float64",))
    assert result.parameters[m.failing[0]].diagnosis is None


def test_the_mse_mean_is_diagnosed_as_a_mean() -> None:
    m = BY_NAME["mse-mean"]
    result = check_formulas(m.formulas, parameters=["W2"], max_examples=100, dtypes=("float64",))
    assert "mean" in (result.parameters["W2"].diagnosis or "")


def test_a_formula_that_changes_between_calls_is_not_diagnosed_as_a_constant_factor_of_1() -> None:
    calls = itertools.count()

    def alternating(*args: torch.Tensor) -> torch.Tensor:
        return two_layer.grad_b2(*args) * (-1 if next(calls) % 2 else 1)

    r = check_formulas({"b2": alternating}, parameters=["b2"], max_examples=50).parameters["b2"]
    assert not r.passed
    assert r.diagnosis != "off by a constant factor 1 on every element"


# --------------------------------------------------------------------------------------------------------
# Example counts


def test_a_passing_parameter_counts_every_example() -> None:
    result = check_formulas(CORRECT, max_examples=37)
    assert {name: (r.passed, r.examples, r.inconclusive) for name, r in result.parameters.items()} == {
        name: (True, 37, 0) for name in PARAMETERS
    }


def test_a_mistake_visible_at_the_smallest_case_fails_at_the_first_example() -> None:
    result = check_formulas(SEED_FORMULAS, parameters=["b1", "b2"], max_examples=100)
    assert [r.examples for r in result.parameters.values()] == [1, 1]


def test_a_mistake_needing_a_larger_batch_counts_the_examples_it_took() -> None:
    r = check_formulas(SEED_FORMULAS, parameters=["W1"], max_examples=100, dtypes=("float64",)).parameters["W1"]
    assert 1 < r.examples <= 100


# --------------------------------------------------------------------------------------------------------
# Inconclusive cases


def _broken_fd_assignment(broken: Callable[[Mapping[str, torch.Tensor]], bool]) -> Assignment:
    """The seed's assignment with finite differences that disagree with autograd where ``broken(args)``."""

    def finite_differences(args):
        fd = two_layer.finite_differences(args["X"], args["Y"], args)
        if not broken(args):
            return fd
        return {name: (grad + 1.0, torch.zeros_like(err)) for name, (grad, err) in fd.items()}

    return dataclasses.replace(two_layer.SIGMOID, name="broken-fd", finite_differences=finite_differences)


def test_when_the_references_always_disagree_nothing_fails_and_every_case_is_inconclusive() -> None:
    result = check_formulas(CORRECT, assignment=_broken_fd_assignment(lambda args: True), max_examples=30)
    assert {name: (r.passed, r.examples, r.inconclusive) for name, r in result.parameters.items()} == {
        name: (True, 30, 30) for name in PARAMETERS
    }


def test_inconclusive_cases_do_not_hide_a_failure_on_the_conclusive_ones() -> None:
    assignment = _broken_fd_assignment(lambda args: args["X"].shape[0] > 3)  # larger batches are inconclusive
    result = check_formulas(BY_NAME["sign-error"].formulas, assignment=assignment, max_examples=100)

    r = result.parameters["W2"]
    assert (r.passed, r.reason, r.counterexample) == (False, "mismatch", Case(Sizes(1, 1, 1, 1)))
    correct = result.parameters["b2"]
    assert correct.passed and 0 < correct.inconclusive < correct.examples


# --------------------------------------------------------------------------------------------------------
# Submission conventions


def test_a_missing_function_fails_that_parameter_as_missing_without_running_it() -> None:
    result = check_formulas({"W1": two_layer.grad_W1}, max_examples=5)
    b1 = result.parameters["b1"]
    assert (b1.passed, b1.reason, b1.examples) == (False, "missing", 0)
    assert b1.message == (
        "no function grad_b1(X, Y, W1, b1, W2, b2) and no gradients(X, Y, W1, b1, W2, b2) returning a mapping with "
        "the key 'b1'"
    )
    assert result.parameters["W1"].passed


def test_one_gradients_function_may_return_all_four() -> None:
    assert check_formulas(two_layer.gradients, max_examples=20).passed
    namespace = {"gradients": two_layer.gradients}
    assert check_formulas(formulas_from_namespace(namespace, PARAMETERS), max_examples=20).passed


def test_grad_functions_take_precedence_over_gradients() -> None:
    namespace = {"gradients": two_layer.gradients, "grad_b2": BY_NAME["sign-error"].wrong["W2"]}
    formulas = formulas_from_namespace(namespace, PARAMETERS)
    assert formulas["b2"] is namespace["grad_b2"]
    assert formulas_from_namespace({}, PARAMETERS) == dict.fromkeys(PARAMETERS)


def test_a_gradients_function_returning_no_mapping_or_missing_keys_fails_clearly() -> None:
    not_a_mapping = check_formulas(lambda *args: [1, 2], parameters=["W1"], max_examples=5).parameters["W1"]
    assert (not_a_mapping.reason, not_a_mapping.message.splitlines()[0]) == (
        "error",
        "gradients(...) returned list, not a mapping",
    )
    partial = check_formulas(lambda *args: {"W1": two_layer.grad_W1(*args)}, max_examples=5)
    assert partial.parameters["W1"].passed
    assert (partial.parameters["b1"].reason, partial.parameters["b1"].message.splitlines()[0]) == (
        "missing",
        "gradients(...) returned no 'b1' (keys: ['W1'])",
    )


def test_a_formula_that_depends_on_its_call_count_is_an_error() -> None:
    calls = itertools.count()

    def flaky(*args: torch.Tensor) -> torch.Tensor:
        return two_layer.grad_b2(*args) * (-1 if next(calls) == 3 else 1)

    r = check_formulas({"b2": flaky}, parameters=["b2"], max_examples=50).parameters["b2"]
    assert (r.passed, r.reason) == (False, "error")
    assert r.message is not None and r.message.startswith("the gradient of b2 changed between two calls")


def test_results_are_reported_parameter_by_parameter_as_they_finish() -> None:
    seen: list[ParameterResult] = []
    result = check_formulas(SEED_FORMULAS, max_examples=10, on_result=seen.append)
    assert [r.parameter for r in seen] == list(PARAMETERS)
    assert seen == list(result.parameters.values())


def test_the_checker_does_not_change_the_caller_s_tensors_or_global_rng() -> None:
    state = torch.random.get_rng_state()
    check_formulas(CORRECT, max_examples=10)
    assert torch.equal(torch.random.get_rng_state(), state)


# --- inputs that vary: value regimes of the data (issue 13, item 9) ----------------------------------------------


def _w1_wrong_when_all_x_negative(X: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
    correct = two_layer.grad_W1(X, *rest)
    return 2 * correct if bool((X < 0).all()) else correct


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_formula_wrong_only_when_every_x_is_negative_is_caught(seed: int) -> None:
    result = check_formulas({"W1": _w1_wrong_when_all_x_negative}, max_examples=100, seed=seed)
    w1 = result.parameters["W1"]
    assert (w1.passed, w1.reason) == (False, "mismatch"), w1
    assert w1.counterexample is not None and w1.counterexample.regime == "negative"
    # Shrunk to the smallest such case: one element of data.
    assert (w1.counterexample.sizes.batch, w1.counterexample.sizes.n_feature) == (1, 1)


@pytest.mark.parametrize("regime", ["negative", "zeros", "mixed-scales"])
def test_correct_formulas_pass_in_every_regime(regime: str) -> None:
    from hypothesis import given, settings

    from gradcheckers.assignment import get_assignment
    from gradcheckers.property import CheckSettings, _ReferenceCache, evaluate_case
    from gradcheckers.strategies import cases

    assignment, tolerance = get_assignment(None), CheckSettings().tolerance
    cache = _ReferenceCache(assignment)
    statuses: set[str] = set()

    @settings(max_examples=40)
    @given(cases(regime=regime, device="cpu"))
    def every_parameter_agrees(case: Case) -> None:
        for parameter in PARAMETERS:
            formula = getattr(two_layer, f"grad_{parameter}")
            verdict = evaluate_case(parameter, formula, case, assignment, cache, tolerance, None)
            assert verdict.status != "fail", (case, verdict)
            statuses.add(verdict.status)

    every_parameter_agrees()
    assert "pass" in statuses


# --- messages a student can act on (issue 13, item 8) ------------------------------------------------------------


def test_a_failure_carries_a_snippet_that_rebuilds_the_case_exactly() -> None:
    def grad_W2(X: torch.Tensor, Y: torch.Tensor, W1: torch.Tensor, b1: torch.Tensor, W2: torch.Tensor,
                b2: torch.Tensor) -> torch.Tensor:
        return 1.5 * two_layer.grad_W2(X, Y, W1, b1, W2, b2)

    w2 = check_formulas({"W2": grad_W2}, max_examples=50, seed=0).parameters["W2"]
    assert w2.reason == "mismatch" and w2.snippet is not None
    assert w2.snippet.startswith("import torch\n\nX = torch.tensor([[")
    namespace: dict[str, object] = {}
    exec(w2.snippet, namespace)  # what a student pastes into a notebook
    args = [namespace[name] for name in ("X", "Y", "W1", "b1", "W2", "b2")]
    assert all(isinstance(a, torch.Tensor) and a.dtype == getattr(torch, w2.counterexample.dtype) for a in args)
    assert torch.equal(grad_W2(*args), namespace["returned_grad_W2"])  # the very same values, not rounded
    expected = two_layer.grad_W2(*[a.double() for a in args])  # type: ignore[union-attr]
    assert torch.allclose(expected, namespace["expected_grad_W2"], rtol=1e-12, atol=0)  # type: ignore[arg-type]
    assert json.loads(json.dumps(w2.to_json()))["snippet"] == w2.snippet


def test_a_case_too_large_to_read_has_no_snippet() -> None:
    from gradcheckers.report import SNIPPET_NUMBERS, counterexample_snippet

    big = [[0.5] * SNIPPET_NUMBERS]
    assert counterexample_snippet("W1", {"X": big}, [1.0], [2.0], "float64") is None
