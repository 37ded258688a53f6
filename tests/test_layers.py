"""The bundled layer pack: every layer's reference and correct variants pass; every wrong variant fails at the input
it names, on a counterexample that no smaller size or hyperparameter reproduces.

Kept fast with few examples per check; tests/test_slow.py runs the correct variants over 2,000 examples per dtype.
"""

from __future__ import annotations

import pytest
from gradcheckers.models.layers import LAYERS

from gradcheckers.assignment import Case, Hyperparameter
from gradcheckers.backward import DEFAULT_SIZE, _evaluate, _layer
from gradcheckers.layer import Layer, Variant
from gradcheckers.tolerance import Tolerance

# Few examples keep the suite fast: every wrong variant here fails within its first examples.
EXAMPLES = {"conv": 6, "maxpool": 10}
DEFAULT_EXAMPLES = 15


def examples(layer: Layer) -> int:
    return EXAMPLES.get(layer.name, DEFAULT_EXAMPLES)


def _variants(kind: str) -> list[object]:
    params = []
    for layer in LAYERS.values():
        found = {"reference": Variant(layer.backward)} if kind == "correct" else {}
        found.update(layer.correct if kind == "correct" else layer.wrong)
        for label, variant in found.items():
            params.append(pytest.param(layer, variant, id=f"{layer.name}-{label}"))
    return params


def test_the_pack_has_every_layer_courses_assign_with_three_wrong_and_two_correct_variants() -> None:
    assert set(LAYERS) == {"affine", "relu", "leaky-relu", "sigmoid", "tanh", "softmax-loss", "svm-loss", "batchnorm",
                           "layernorm", "dropout", "conv", "maxpool", "rnn-step", "word2vec-naive-softmax"}
    for layer in LAYERS.values():
        assert len(layer.wrong) >= 3 and len(layer.correct) >= 2, layer.name
        assert layer.reference is not None, layer.name
        assert all(v.fails in layer.inputs for v in layer.wrong.values()), layer.name


@pytest.mark.parametrize(("layer", "variant"), _variants("correct"))
def test_a_correct_variant_passes(layer: Layer, variant: Variant) -> None:
    result = layer.check(variant.forward, variant.backward, max_examples=examples(layer))
    assert result.passed, result.message


@pytest.mark.parametrize(("layer", "variant"), _variants("wrong"))
def test_a_wrong_variant_fails_at_its_input_on_a_locally_smallest_case(layer: Layer, variant: Variant) -> None:
    result = layer.check(variant.forward, variant.backward, max_examples=examples(layer))
    assert not result.passed
    assert variant.fails in result.parameters, result.message
    assert result.parameters[0] == variant.fails, result.message
    case = result.counterexample
    assert case is not None and case.dtype == "float64", case
    assert f"{variant.fails}" in result.message
    for smaller in _one_step_smaller(layer, case):
        failed, _ = _evaluate(_checked(layer, variant), smaller)
        assert variant.fails not in [v.parameter for v in failed], (
            f"{smaller.describe()} still fails: {case.describe()} was not shrunk")


def _checked(layer: Layer, variant: Variant):  # type: ignore[no-untyped-def]
    return _layer(variant.forward or layer.forward, variant.backward, layer.inputs, None, layer.hyperparameters,
                  layer.reference, "numpy", Tolerance())


def _one_step_smaller(layer: Layer, case: Case) -> list[Case]:
    """The valid cases one step below ``case`` in a single size or integer hyperparameter (floats: their low)."""
    smaller = []
    for name in case.sizes.names:
        value = case.sizes[name]
        domain = layer.hyperparameters.get(name)
        if isinstance(domain, Hyperparameter):
            if domain.kind == "int" and value > (domain.low or 0):
                candidate = value - 1
            elif domain.kind == "float" and value != domain.low:
                candidate = domain.low
            else:
                continue
        else:
            bound = layer.sizes.get(name, DEFAULT_SIZE)
            low = bound if isinstance(bound, int) else bound[0]
            if value <= low:
                continue
            candidate = value - 1
        sizes = case.sizes.replace(**{name: candidate})
        if layer.where is None or layer.where(sizes):
            smaller.append(Case(sizes, case.dtype, case.device, case.seed, case.scale))
    return smaller


def test_the_hyperparameter_a_mistake_depends_on_is_named_in_the_counterexample() -> None:
    conv, pool = LAYERS["conv"], LAYERS["maxpool"]
    stride = conv.check(backward=conv.wrong["dw ignores the stride"].backward, max_examples=6)
    assert stride.counterexample is not None and stride.counterexample.sizes.stride == 2
    padding = conv.check(backward=conv.wrong["dx keeps the padding"].backward, max_examples=6)
    assert padding.counterexample is not None and padding.counterexample.sizes.pad == 1
    assert "pad=1" in padding.message
    window = pool.check(backward=pool.wrong["the window's size taken from the stride"].backward, max_examples=10)
    assert window.counterexample is not None and window.counterexample.sizes.pool != window.counterexample.sizes.stride
