"""Statistical runs of the layer pack (slow): every correct variant passes 2,000 examples in float64 and float32.

The normalizations' correct dx is a difference of much larger terms: the per-element rounding model
(gradcheckers.rounding) is what lets them pass without a loosened tolerance.
"""

from __future__ import annotations

import pytest
from gradcheckers.models.layers import LAYERS

from gradcheckers.layer import Layer, Variant

EXAMPLES = 2000


def _correct() -> list[object]:
    params = []
    for layer in LAYERS.values():
        for label, variant in {"reference": Variant(layer.backward), **layer.correct}.items():
            for dtype in ("float64", "float32"):
                params.append(pytest.param(layer, variant, dtype, id=f"{layer.name}-{label}-{dtype}",
                                           marks=pytest.mark.slow))
    return params


@pytest.mark.parametrize(("layer", "variant", "dtype"), _correct())
def test_a_correct_variant_passes_2000_examples(layer: Layer, variant: Variant, dtype: str) -> None:
    result = layer.check(variant.forward, variant.backward, max_examples=EXAMPLES, dtypes=(dtype,), seed=2026)
    assert result.passed, result.message
    assert result.examples >= EXAMPLES * 0.9  # Hypothesis may stop early once it has tried every distinct case
