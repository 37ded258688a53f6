"""Statistical runs of the layer pack (slow): every correct variant passes 2,000 examples in float64 and float32.

The normalizations' correct dx is a difference of much larger terms: the per-element rounding model
(gradcheckers.rounding) is what lets them pass without a loosened tolerance.
"""

from __future__ import annotations

import pytest
from gradcheckers.models.layers import LAYERS

from gradcheckers.layer import Layer, Variant

EXAMPLES = 2000
# A known false alarm of the rounding model (issue 9, still open): in float32, at a nearly saturated tanh
# (1 - h^2 ~ 1e-3, from terms of size 1), a correct RNN step's dx can differ from the float64 reference by ~1.5
# times its allowance, seen once in 2,000 cases (N=1, D=3, H=1, seed=628627). Not strict: most runs pass.
KNOWN_FALSE_ALARM = pytest.mark.xfail(reason="issue 9: float32 rounding of 1 - tanh^2 near saturation is "
                                             "underestimated in ~1 of 2,000 cases", strict=False)


def _correct() -> list[object]:
    params = []
    for layer in LAYERS.values():
        for label, variant in {"reference": Variant(layer.backward), **layer.correct}.items():
            for dtype in ("float64", "float32"):
                marks = [pytest.mark.slow]
                if layer.name == "rnn-step" and dtype == "float32":
                    marks.append(KNOWN_FALSE_ALARM)
                params.append(pytest.param(layer, variant, dtype, id=f"{layer.name}-{label}-{dtype}", marks=marks))
    return params


@pytest.mark.parametrize(("layer", "variant", "dtype"), _correct())
def test_a_correct_variant_passes_2000_examples(layer: Layer, variant: Variant, dtype: str) -> None:
    result = layer.check(variant.forward, variant.backward, max_examples=EXAMPLES, dtypes=(dtype,), seed=2026)
    assert result.passed, result.message
    assert result.examples >= EXAMPLES * 0.9  # Hypothesis may stop early once it has tried every distinct case
