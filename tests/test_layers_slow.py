"""Statistical runs of the layer pack (slow): every correct variant passes 2,000 examples in float64 and float32.

The normalizations' correct dx is a difference of much larger terms, which today's generic tolerance does not
see (issue 9's rounding model does): those runs are expected to fail until it lands, and are marked so.
"""

from __future__ import annotations

import pytest
from gradcheckers.models.layers import LAYERS

from gradcheckers.backward import Layer, Variant

EXAMPLES = 2000
ROUNDING_SENSITIVE = {"batchnorm", "layernorm"}


def _correct() -> list[object]:
    params = []
    for layer in LAYERS.values():
        for label, variant in {"reference": Variant(layer.backward), **layer.correct}.items():
            for dtype in ("float64", "float32"):
                marks = [pytest.mark.slow]
                if layer.name in ROUNDING_SENSITIVE:
                    marks.append(pytest.mark.xfail(reason="issue 9: rounding of the normalizations' dx", strict=False))
                params.append(pytest.param(layer, variant, dtype, id=f"{layer.name}-{label}-{dtype}", marks=marks))
    return params


@pytest.mark.parametrize(("layer", "variant", "dtype"), _correct())
def test_a_correct_variant_passes_2000_examples(layer: Layer, variant: Variant, dtype: str) -> None:
    result = layer.check(variant.forward, variant.backward, max_examples=EXAMPLES, dtypes=(dtype,), seed=2026)
    assert result.passed, result.message
    assert result.examples >= EXAMPLES * 0.9  # Hypothesis may stop early once it has tried every distinct case
