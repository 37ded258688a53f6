"""Long statistical runs: the correct formulas against the references over thousands of Hypothesis cases,
with no false failure. Deselect with ``-m "not slow"``; the counts are printed (``-s``) for the record."""

from __future__ import annotations

import time

import pytest
from gradcheckers.models import two_layer
from gradcheckers.models.two_layer import PARAMETERS

from gradcheckers import check_formulas, formulas_from_namespace

pytestmark = pytest.mark.slow

EXAMPLES = 2000
STRESS_EXAMPLES = 500  # the stress range has four scales; 500 examples keep the file near a minute
CORRECT = formulas_from_namespace(vars(two_layer), PARAMETERS)


def _run(dtype: str, examples: int, stress: bool = False) -> None:
    start = time.perf_counter()
    result = check_formulas(CORRECT, max_examples=examples, seed=0, dtypes=(dtype,), stress=stress)
    elapsed = time.perf_counter() - start

    counts = ", ".join(f"{n} {r.examples} ({r.inconclusive} inconclusive)" for n, r in result.parameters.items())
    print(f"\n{dtype}{' stress' if stress else ''}: {counts}; {elapsed:.1f} s")
    failures = {name: r.message for name, r in result.parameters.items() if not r.passed}
    assert not failures, failures
    assert [r.examples for r in result.parameters.values()] == [examples] * len(PARAMETERS)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_correct_formulas_never_fail_in_2000_examples_per_parameter(dtype: str) -> None:
    _run(dtype, EXAMPLES)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_correct_formulas_never_fail_in_the_stress_range(dtype: str) -> None:
    _run(dtype, STRESS_EXAMPLES, stress=True)
