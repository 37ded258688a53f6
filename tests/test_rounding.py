"""The per-element rounding model (gradcheckers.rounding): what a correct gradient computed another way, in the
judged dtype, may be off by. Each test but the guard is an observed false alarm, kept as the case that showed it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from formulas.backward import LAYERS as PUBLISHED
from formulas.backward import Layer
from gradcheckers.models.layers.recurrent import RNN_STEP

from gradcheckers import GradientMismatchError, assert_gradients_agree
from gradcheckers.assignment import Case, Sizes
from gradcheckers.backward import _evaluate, _layer
from gradcheckers.references import autograd_gradients
from gradcheckers.rounding import RandomRounding, RoundingModel, estimate_rounding
from gradcheckers.tolerance import Tolerance, allowed_error


def test_a_correct_rnn_step_passes_the_float32_case_that_once_failed() -> None:
    # Seen once in 2,000 slow-suite cases: the einsum writing's dx off by 1.46x its allowance (tanh at 1 - h^2
    # ~ 1e-3; torch's float32 tanh rounded luckily close, numpy's did not).
    variant = RNN_STEP.correct["a mapping by name, einsum"]
    layer = _layer(RNN_STEP.forward, variant.backward, RNN_STEP.inputs, None, {}, RNN_STEP.reference, "numpy",
                   Tolerance())
    failed, _ = _evaluate(layer, Case(Sizes(N=1, D=3, H=1), "float32", "cpu", 628627))
    assert not failed, failed[0].message


def test_float64_softmax_computed_in_float64_from_a_float32_run_passes_forward_mode_ad() -> None:
    # op_db's softmax.with_dtype in float64 (one element of 25 at 1.1x its allowance), rebuilt: softmax(x,
    # dtype=float64) computes in float64 even in the float32 run, so only the float64 arm sees its rounding, and
    # moving the inputs by 64 ulps does not move the rounding of s_k (w_k - sum_i w_i s_i) where s_k ~ 1: that
    # element of a dominated row is a cancellation of terms of size |w|, rounded the same in every draw. 1 of 200
    # random cases failed (seed 103); random rounding of every float64 result samples it.
    g = torch.Generator().manual_seed(103)
    x = 3 * torch.randn(5, 5, generator=g, dtype=torch.float64)
    w = torch.randn(5, 5, generator=g, dtype=torch.float64)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return (torch.softmax(x, 1, dtype=torch.float64) * w).sum()

    assert assert_gradients_agree(loss, {"x": x}, {"x": torch.func.jacfwd(loss)(x)}).passed


def test_float32_one_minus_tanh_squared_near_saturation_is_within_its_allowance() -> None:
    # A guard over many elements (it passed before random rounding too, worst 0.87 of the allowance; now 0.02):
    # every element its own saturated tanh (1 - tanh^2 from 1e-2 down to 1e-5): numpy's float32 formula
    # w (1 - h h), from numpy's own rounding of h, must lie within the model's float32 allowance of the float64
    # gradient, whichever way torch's float32 tanh happened to round the same element.
    rng = np.random.default_rng(9)
    x = rng.uniform(2.5, 6.5, 4000) * rng.choice([-1.0, 1.0], 4000)
    w = rng.standard_normal(4000)
    args = {"x": torch.from_numpy(x.astype(np.float32).astype(np.float64)),
            "w": torch.from_numpy(w.astype(np.float32).astype(np.float64))}

    def loss(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (w * torch.tanh(x)).sum()

    reference = autograd_gradients(loss, args, ["x"])
    estimate = estimate_rounding(loss, args, ["x"], reference)
    h = np.tanh(x.astype(np.float32))
    formula = torch.from_numpy((w.astype(np.float32) * (1 - h * h)).astype(np.float64))
    allowed = allowed_error(reference["x"], estimate.low["x"], torch.float32, Tolerance())
    judged = ~estimate.unstable["x"]
    ratio = ((formula - reference["x"]).abs() / allowed)[judged]
    over = f"{int((ratio > 1).sum())} of {int(judged.sum())} over, worst {float(ratio.max())}"
    assert float(ratio.max()) <= 1.0, over


def test_random_rounding_moves_every_float32_result_of_forward_and_backward_by_one_ulp() -> None:
    x = torch.full((1000,), 3.0, requires_grad=True)
    with RandomRounding(torch.Generator().manual_seed(0)):
        y = torch.tanh(x)
        (g,) = torch.autograd.grad(y.sum(), [x])
    exact = torch.tanh(torch.tensor(3.0))
    ulp = float(torch.nextafter(exact, torch.tensor(2.0)) - exact)
    moved = (y.detach() - exact).abs() / ulp
    assert bool((moved == 1).all())  # one ulp, either way
    assert 400 < int((y.detach() > exact).sum()) < 600  # up or down at random
    assert int(torch.unique(g).numel()) > 1  # tanh's backward rounds too, from the moved output


def test_a_float64_group_norm_dx_of_exact_zeros_passes_where_random_rounding_repeats_the_reference() -> None:
    # The slow corpus's group norm, seed 66: the whole dx is 0 up to rounding (largest entry 2.3e-13), each element a
    # difference of terms of ~100 whose float64 rounding is 0 or one ulp of them (1.4e-14). The formula returns an
    # exact 0 where autograd returns 1.4e-14, and all four randomly rounded float64 draws returned autograd's own
    # value again (allowed 3.2e-15): the float64 arm's draws with moved parameters change every term.
    from formulas.backward import LAYERS
    from test_verdict_corpus import _case, _grads

    layer = next(la for la in LAYERS if la.name == "groupnorm")
    params, dy, loss = _case(layer, 66, torch.float64)
    assert assert_gradients_agree(loss, params, _grads(layer.correct["compact"], params, dy)).passed


@pytest.mark.parametrize("layer", PUBLISHED, ids=[layer.name for layer in PUBLISHED])
def test_the_floor_is_at_most_the_model_everywhere_and_marks_nothing_undecidable(layer: Layer) -> None:
    # settled_limits accepts a pass under the floor without the draws: sound only if every allowance of the floor
    # is at most the model's (allowed_error and references_agree grow with the estimate). Checked on every
    # published layer of the corpus, for float64 and for float32 and below.
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        params = {k: 3 * torch.randn(s, generator=g, dtype=torch.float64) for k, s in layer.shapes(4, 3).items()}
        dy = torch.randn(layer.forward(**params).shape, generator=g, dtype=torch.float64)
        loss = functools.partial(_weighted, layer.forward, dy)
        model = RoundingModel(loss, params, list(params), autograd_gradients(loss, params, list(params)))
        for n in params:
            assert bool((model.floor.rounding[n] <= model.full.rounding[n]).all()), (layer.name, n)
            assert bool((model.floor.low[n] <= model.full.low[n]).all()), (layer.name, n)
            assert not bool(model.floor.unstable[n].any() | model.floor.kinked[n].any())


def _weighted(forward: Callable[..., torch.Tensor], dy: torch.Tensor, **params: torch.Tensor) -> torch.Tensor:
    return (forward(**params) * dy).sum()


@pytest.fixture
def draws() -> Iterator[list[int]]:
    """One entry per run under random rounding (the rounding model's draws) while the test runs."""
    entered: list[int] = []
    original = RandomRounding.__enter__
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RandomRounding, "__enter__", lambda self: entered.append(1) or original(self))
        yield entered


def test_the_model_s_draws_run_only_for_a_gradient_that_does_not_agree_under_its_floor(draws: list[int]) -> None:
    # The draws are ten times the references' cost: a gradient equal to autograd's never needs them; a wrong one
    # (and a correct one rounded beyond the floor) gets them before it is judged.
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def loss(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (3,)).pow(3).sum()

    exact = autograd_gradients(loss, {"x": x}, ["x"])["x"]
    assert assert_gradients_agree(loss, {"x": x}, {"x": exact}).passed
    assert not draws
    with pytest.raises(GradientMismatchError):
        assert_gradients_agree(loss, {"x": x}, {"x": exact * (1 + 1e-6)})
    assert draws


def test_an_infinite_intermediate_the_loss_masks_out_leaves_every_element_decidable() -> None:
    # op_db's masked.softmin: masked elements are filled with +inf before softmin. Every derivative is finite and
    # the references agree to 1e-12, yet every element was inconclusive: random rounding moved the infinities
    # (inf + (nextafter(inf) - inf) is NaN: every draw NaN, "kinked"), and the finite differences' rounding term,
    # u times the largest intermediate, was infinite. A corrupted element went uncaught.
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, generator=g, dtype=torch.float64) * 3
    w = torch.randn(5, generator=g, dtype=torch.float64)
    mask = torch.tensor([True, True, False, True, False])

    def loss(x: torch.Tensor) -> torch.Tensor:
        return (torch.softmax(-x.masked_fill(~mask, float("inf")), 0) * w).sum()

    exact = autograd_gradients(loss, {"x": x}, ["x"])["x"]
    result = assert_gradients_agree(loss, {"x": x}, {"x": exact})
    assert result.inconclusive == 0
    wrong = exact.clone()
    wrong[0] *= 1 + 1e-4
    with pytest.raises(GradientMismatchError):
        assert_gradients_agree(loss, {"x": x}, {"x": wrong})


def test_a_float64_max_norm_is_decidable_where_its_backward_compares_abs_with_the_norm() -> None:
    # op_db's norm.inf: the backward finds the largest |x_i| by comparing |x| with the norm. Random rounding took
    # |x_i| (equal to no argument when x_i < 0) for a rounded result and moved it an ulp, so no element equalled
    # the norm: every draw's gradient 0 or NaN, every element "kinked", though the references agree to 1e-11.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, generator=g, dtype=torch.float64) * 3
    x[x.abs().argmax()] = -x.abs().max()  # the largest |x_i| negative: |x_i| is not an argument's value

    def loss(x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(x, float("inf")) * 1.7

    exact = autograd_gradients(loss, {"x": x}, ["x"])["x"]
    model = RoundingModel(loss, {"x": x}, ["x"], {"x": exact})
    assert not bool(model.full.kinked["x"].any())
    wrong = exact.clone()
    wrong[x.abs().argmax()] *= 1 + 1e-4
    with pytest.raises(GradientMismatchError):
        assert_gradients_agree(loss, {"x": x}, {"x": wrong})


def test_along_random_directions_the_draws_run_only_where_the_floor_does_not_settle_the_verdict(
    draws: list[int],
) -> None:
    # Beyond max_full_elements the draws were some 85% of a check's time (P = 180,001: 1.77 of 2.07 s); a
    # gradient that agrees along every direction under the floor passes without them, and a wrong element still
    # fails, judged by the model itself along the same directions.
    g = torch.Generator().manual_seed(2)
    x, w = torch.randn(64, 8, generator=g, dtype=torch.float64), torch.randn(8, 40, generator=g, dtype=torch.float64)

    def loss(w: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ w).pow(2).sum()

    exact = autograd_gradients(loss, {"w": w}, ["w"])["w"]
    assert assert_gradients_agree(loss, {"w": w}, {"w": exact}, max_full_elements=100).passed
    assert not draws
    wrong = exact.clone()
    wrong[3, 7] *= 1.01
    with pytest.raises(GradientMismatchError, match="random directions"):
        assert_gradients_agree(loss, {"w": w}, {"w": wrong}, max_full_elements=100)
    assert draws
