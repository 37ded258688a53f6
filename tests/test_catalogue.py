"""The wrong-formula catalogue fails for the right parameter, for the right reason, at the smallest case;
the correct variants pass.

Every run uses a fixed seed, so the counterexamples are exact: a wrong formula shrinks to the smallest sizes
at which its mistake shows (``tests/formulas/wrong.py`` says why, entry by entry).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from formulas import Formulas
from formulas.correct import VARIANTS
from formulas.wrong import BY_NAME, CORRECT, MISTAKES, Mistake
from gradcheckers.models import seed as seed_formulas
from gradcheckers.models import two_layer

from gradcheckers import Case, Sizes, check_formulas, formulas_from_namespace

MAX_EXAMPLES = 100
SEED = 0
DTYPES = ("float64", "float32")


def _runs() -> list[object]:
    return [pytest.param(m, dtype, id=f"{m.name}-{dtype}") for m in MISTAKES for dtype in DTYPES]


def _check(formulas: object, dtype: str, stress: bool = False, **kwargs: object):
    return check_formulas(formulas, max_examples=MAX_EXAMPLES, seed=SEED, dtypes=(dtype,), stress=stress, **kwargs)


def test_the_catalogue_has_at_least_fourteen_distinct_mistakes_with_unique_names() -> None:
    assert len(MISTAKES) >= 14
    assert len(BY_NAME) == len(MISTAKES)


@pytest.mark.parametrize(("mistake", "dtype"), _runs())
def test_a_wrong_formula_fails_exactly_its_parameters_at_the_smallest_case(mistake: Mistake, dtype: str) -> None:
    # The parameters that are not the mistake get the correct formulas; checking that they pass once, in
    # float64, is enough to show a failure is never blamed on the wrong parameter.
    parameters = two_layer.PARAMETERS if dtype == "float64" else mistake.failing
    result = _check(mistake.formulas, dtype, stress=mistake.stress, parameters=parameters)

    failed = {name for name, r in result.parameters.items() if not r.passed}
    assert failed == set(mistake.failing)
    scale = mistake.scale_float32 if dtype == "float32" and mistake.scale_float32 else mistake.scale
    expected = Case(Sizes(*mistake.sizes), dtype=dtype, device="cpu", seed=mistake.seed, scale=scale,
                    regime=mistake.regime)
    for name in mistake.failing:
        r = result.parameters[name]
        assert (r.reason, r.counterexample) == (mistake.reason, expected), r.message
        assert r.message is not None and mistake.message in r.message
    for name in set(result.parameters) - set(mistake.failing):
        r = result.parameters[name]
        assert (r.passed, r.examples, r.reason, r.counterexample) == (True, MAX_EXAMPLES, None, None)


@pytest.mark.parametrize("name", ["seed-W1-precedence", "dropped-rows", "mse-mean", "transposed-dW2"])
def test_with_both_dtypes_the_counterexample_shrinks_to_float64(name: str) -> None:
    mistake = BY_NAME[name]
    result = check_formulas(
        {n: mistake.formulas[n] for n in mistake.failing},
        parameters=mistake.failing,
        max_examples=MAX_EXAMPLES,
        seed=SEED,
        dtypes=("float64", "float32"),
    )
    for r in result.parameters.values():
        assert r.counterexample == Case(Sizes(*mistake.sizes), dtype="float64")


def test_exp_sigma_prime_passes_at_realistic_scale() -> None:
    """exp(h) / (1 + exp(h))^2 is sigma' exactly; only the stress range makes it overflow."""
    mistake = BY_NAME["exp-sigma-prime"]
    result = check_formulas(mistake.formulas, parameters=mistake.failing, max_examples=MAX_EXAMPLES, dtypes=DTYPES)
    assert result.passed, {n: r.message for n, r in result.parameters.items() if not r.passed}


def test_the_seed_submission_fails_W1_b1_b2_and_passes_W2() -> None:
    formulas = formulas_from_namespace(vars(seed_formulas), two_layer.PARAMETERS)
    result = check_formulas(formulas, max_examples=MAX_EXAMPLES, seed=SEED, dtypes=DTYPES)

    summary = {
        name: (r.passed, r.reason, None if r.counterexample is None else r.counterexample.sizes)
        for name, r in result.parameters.items()
    }
    assert summary == {
        "W1": (False, "shape", Sizes(2, 1, 1, 1)),
        "b1": (False, "shape", Sizes(1, 1, 1, 1)),
        "W2": (True, None, None),
        "b2": (False, "shape", Sizes(1, 1, 1, 1)),
    }


def _recording_dtypes(formulas: Formulas, seen: set[torch.dtype]) -> Formulas:
    def record(function: Callable[..., object]) -> Callable[..., object]:
        def call(*args: torch.Tensor) -> object:
            seen.add(args[0].dtype)
            return function(*args)

        return call

    return record(formulas) if callable(formulas) else {name: record(f) for name, f in formulas.items()}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_correct_variant_passes_all_four_parameters_in_both_dtypes(name: str) -> None:
    seen: set[torch.dtype] = set()
    # The numpy variant calls .numpy(), which a CUDA tensor refuses: it is a CPU-only submission.
    devices = ("cpu",) if name == "numpy" else None
    result = check_formulas(
        _recording_dtypes(VARIANTS[name], seen), max_examples=MAX_EXAMPLES, seed=SEED, dtypes=DTYPES,
        **({"devices": devices} if devices else {}),
    )

    assert seen == {torch.float64, torch.float32}

    assert {n: (r.passed, r.examples) for n, r in result.parameters.items()} == {
        n: (True, MAX_EXAMPLES) for n in two_layer.PARAMETERS
    }, {n: r.message for n, r in result.parameters.items() if not r.passed}


def test_the_correct_variants_really_differ_from_the_library_formulas() -> None:
    """Each variant computes the gradients its own way and returns the library's numbers (float32 rounding
    aside), whatever container it returns them in."""
    case = Case(Sizes(7, 3, 5, 2), dtype="float32", seed=11)
    args = two_layer.SIGMOID.tensors(case)
    ordered = [args[n] for n in two_layer.SIGMOID.arguments]
    expected = {n: CORRECT[n](*ordered).double().numpy() for n in two_layer.PARAMETERS}
    for name, formulas in VARIANTS.items():
        values = formulas(*ordered) if callable(formulas) else {n: formulas[n](*ordered) for n in formulas}
        for n in two_layer.PARAMETERS:
            got = np.asarray(values[n], dtype=np.float64)
            np.testing.assert_allclose(got, expected[n], rtol=1e-4, atol=1e-5, err_msg=f"{name}: {n}")
