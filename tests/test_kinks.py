"""Kinks are never blamed on the student: elements near a relu or abs kink are inconclusive, nothing else is.

The planted cases put pre-activations exactly at 0, at +-1e-9, and at the float32 rounding of 0 (where a
float32 H = X @ W1 + b1 lands on the other side of the kink than the float64 reference's), with a tiny
input feature so that the finite differences along that feature do not reach the kink: exactly the cases
where, without the kink analysis, a correct relu formula failed in float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
from gradcheckers.models import softmax, two_layer
from torch import Tensor
from torch.nn import functional

from gradcheckers.assignment import Assignment, Case, Sizes
from gradcheckers.compare import judge
from gradcheckers.kinks import kinked_elements, one_sided_kinks, pre_activation_kinks
from gradcheckers.property import check_formulas
from gradcheckers.references import compute_references

EXAMPLES = 150


def planted(draw: Callable[..., dict[str, Tensor]]) -> Callable[..., dict[str, Tensor]]:
    """A draw with every other hidden unit's pre-activation planted near 0 on one row.

    X and W1 are made float32 values (so that a float32 case holds the same numbers), the planted row gets a
    tiny first feature (1e-3: the finite differences along it move H by 2e-8, less than float32 rounding),
    and b1_j = -(X_i W1_j) + offset with offsets 0, +1e-9, -1e-9 and "the float32 rounding of -(X_i W1_j)".
    """

    def draw_planted(sizes: Sizes, generator: torch.Generator, scale: float = 1.0) -> dict[str, Tensor]:
        t = draw(sizes, generator, scale)
        X, W1, b1 = t["X"].float().double(), t["W1"].float().double(), t["b1"].clone()
        for j in range(0, W1.shape[1], 2):
            i = (j // 2) % X.shape[0]
            X[i, 0] = 1e-3 if j % 4 == 0 else -1e-3
            s = X[i] @ W1[:, j]
            b1[j] = (-s, -s + 1e-9, -s - 1e-9, -s.float().double())[(j // 2) % 4]
        return {**t, "X": X, "W1": W1, "b1": b1}

    return draw_planted


RELU_PLANTED = dataclasses.replace(two_layer.RELU, name="two-layer-relu-planted", draw=planted(two_layer.draw))
SOFTMAX_PLANTED = dataclasses.replace(
    softmax.SOFTMAX_CLASSIFIER, name="softmax-classifier-planted", draw=planted(softmax.draw)
)


def relu_other_order(X, Y, W1, b1, W2, b2):
    """Correct, with H summed in another order and the other subgradient at 0 (relu'(0) = 1)."""
    H = b1 + torch.einsum("nf,fj->nj", X, W1)
    Hs = torch.relu(H)
    G = -2 * (Y - (Hs @ W2 + b2))
    dH = (G @ W2.T) * (H >= 0).to(H.dtype)
    return {"W1": X.T @ dH, "b1": dH.sum(0), "W2": Hs.T @ G, "b2": G.sum(0)}


def relu_no_mask(X, Y, W1, b1, W2, b2):
    Hs = torch.relu(X @ W1 + b1)
    G = -2 * (Y - (Hs @ W2 + b2))
    dH = G @ W2.T
    return {"W1": X.T @ dH, "b1": dH.sum(0), "W2": Hs.T @ G, "b2": G.sum(0)}


def softmax_other_order(X, y, W1, b1, W2, b2):
    H = b1 + torch.einsum("nf,fj->nj", X, W1)
    Hs = torch.relu(H)
    S = Hs @ W2 + b2
    G = torch.softmax(S, 1) - functional.one_hot(y, S.shape[1]).to(S.dtype)
    dH = (G @ W2.T) * (H >= 0).to(H.dtype)
    return {"W1": X.T @ dH, "b1": dH.sum(0), "W2": Hs.T @ G, "b2": G.sum(0)}


def softmax_inverted_mask(X, y, W1, b1, W2, b2):
    H = X @ W1 + b1
    Hs = torch.relu(H)
    S = Hs @ W2 + b2
    G = torch.softmax(S, 1) - functional.one_hot(y, S.shape[1]).to(S.dtype)
    dH = (G @ W2.T) * (H < 0).to(H.dtype)
    return {"W1": X.T @ dH, "b1": dH.sum(0), "W2": Hs.T @ G, "b2": G.sum(0)}


@pytest.mark.parametrize(
    ("assignment", "formulas"),
    [(two_layer.RELU, two_layer.RELU.reference), (two_layer.RELU, relu_other_order),
     (RELU_PLANTED, RELU_PLANTED.reference), (RELU_PLANTED, relu_other_order),
     (SOFTMAX_PLANTED, softmax_other_order)],
    ids=["relu", "relu-other-order", "planted", "planted-other-order", "softmax-planted-other-order"],
)
def test_a_correct_relu_formula_never_fails(assignment: Assignment, formulas: Callable[..., object]) -> None:
    examples = EXAMPLES if assignment is not SOFTMAX_PLANTED else EXAMPLES // 2  # its oracles cost the most
    result = check_formulas(formulas, assignment=assignment, max_examples=examples, seed=1,
                            dtypes=("float32", "float64"))
    assert result.passed, {p: r.message for p, r in result.parameters.items() if not r.passed}


def test_planted_kinks_make_the_hidden_layer_inconclusive_and_nothing_else() -> None:
    result = check_formulas(relu_other_order, assignment=RELU_PLANTED, max_examples=30, seed=1)
    assert result.parameters["W1"].inconclusive > 0 and result.parameters["b1"].inconclusive > 0
    assert result.parameters["W2"].inconclusive == 0 and result.parameters["b2"].inconclusive == 0


@pytest.mark.parametrize(("assignment", "wrong", "failing"),
                         [(RELU_PLANTED, relu_no_mask, {"W1", "b1"}),
                          (SOFTMAX_PLANTED, softmax_inverted_mask, {"W1", "b1"})],
                         ids=["relu-no-mask", "softmax-inverted-mask"])
def test_a_wrong_relu_formula_still_fails_on_planted_cases(
    assignment: Assignment, wrong: Callable[..., object], failing: set[str]
) -> None:
    result = check_formulas(wrong, assignment=assignment, max_examples=30, seed=1)
    assert {p for p, r in result.parameters.items() if not r.passed} == failing
    assert all(result.parameters[p].reason == "mismatch" for p in failing)


def _unit_case(offset: float, dtype: str = "float32", x0: float = 1e-3) -> dict[str, Tensor]:
    """One sample, two features, two hidden units; unit 0 sits at ``offset`` from its kink."""
    dt = getattr(torch, dtype)
    X = torch.tensor([[x0, 0.75]], dtype=dt)
    W1 = torch.tensor([[0.5, 1.0], [1.25, 1.0]], dtype=dt)
    b1 = torch.tensor([-(x0 * 0.5 + 0.75 * 1.25) + offset, 0.5], dtype=torch.float64).to(dt)
    return {"X": X, "Y": torch.ones(1, 1, dtype=dt), "W1": W1, "b1": b1,
            "W2": torch.tensor([[1.0], [-1.0]], dtype=dt), "b2": torch.zeros(1, dtype=dt)}


@pytest.mark.parametrize("offset", [0.0, 1e-9, -1e-9, 1e-7])
def test_a_pre_activation_within_the_rounding_band_marks_its_column(offset: float) -> None:
    masks = pre_activation_kinks(two_layer.RELU, _unit_case(offset))
    assert masks is not None
    assert masks["W1"].tolist() == [[True, False], [True, False]]
    assert masks["b1"].tolist() == [True, False]
    assert not masks["W2"].any() and not masks["b2"].any()


def test_float64_has_a_narrower_band_than_float32() -> None:
    # 1e-7 is inside float32's rounding band of H (~3e-6 here) but far outside float64's (~1e-14); the
    # finite differences along W1[0, 0] reach 2e-5 * 1e-3 = 2e-8 < 1e-7, and along W1[1, 0] 1.5e-5 > 1e-7.
    masks = pre_activation_kinks(two_layer.RELU, _unit_case(1e-7, "float64"))
    assert masks is not None
    assert masks["W1"].tolist() == [[False, False], [True, False]]
    assert masks["b1"].tolist() == [True, False]


def test_a_pre_activation_far_from_its_kink_marks_nothing() -> None:
    assert pre_activation_kinks(two_layer.RELU, _unit_case(0.3)) is None
    assert kinked_elements(two_layer.SIGMOID, _unit_case(0.0)) is None  # smooth: nothing to do


def test_judge_turns_kinked_elements_inconclusive_not_failed() -> None:
    args = _unit_case(0.0, "float64")
    refs = compute_references(two_layer.RELU, args)
    assert refs.kinked is not None
    wrong_side = refs.autograd["b1"].clone()
    wrong_side[0] += 5.0  # relu'(0) taken as 1 instead of autograd's 0: a whole term more
    verdict = judge("b1", wrong_side, (2,), refs.autograd["b1"], refs.finite_differences["b1"],
                    refs.fd_error["b1"], refs.rounding["b1"] if refs.rounding else refs.autograd["b1"],
                    torch.float64, kinked=refs.kinked["b1"])
    assert verdict.status == "inconclusive"
    assert "close to a kink" in verdict.summary
    wrong_elsewhere = refs.autograd["b1"].clone()
    wrong_elsewhere[1] += 5.0
    verdict = judge("b1", wrong_elsewhere, (2,), refs.autograd["b1"], refs.finite_differences["b1"],
                    refs.fd_error["b1"], refs.rounding["b1"] if refs.rounding else refs.autograd["b1"],
                    torch.float64, kinked=refs.kinked["b1"])
    assert verdict.status == "fail"


# -- an assignment with kinks but no hook: the one-sided differences are the signal -----------------------


def _l1_loss(X: Tensor, Y: Tensor, W: Tensor, b: Tensor) -> Tensor:
    return (X @ W + b - Y).abs().sum()


def _l1_gradients(X: Tensor, Y: Tensor, W: Tensor, b: Tensor) -> dict[str, Tensor]:
    r = torch.sign(X @ W + b - Y)
    return {"W": X.T @ r, "b": r.sum(0)}


def _l1_draw(sizes: Sizes, generator: torch.Generator, scale: float = 1.0) -> dict[str, Tensor]:
    """Values on a grid of 1/8 (exact in float32); in half the cases Y = X W + b on the first row, a residual
    exactly 0 (the other half decide every element, so a wrong formula still fails)."""
    n, f, o = sizes.batch, sizes.n_feature, sizes.n_output

    def grid(*shape: int) -> Tensor:
        return torch.round(torch.randn(*shape, generator=generator, dtype=torch.float64) * 8) / 8 * scale

    X, W, b, Y = grid(n, f), grid(f, o), grid(o), grid(n, o)
    if float(torch.rand(1, generator=generator, dtype=torch.float64)) < 0.5:
        Y[0] = X[0] @ W + b
    return {"X": X, "Y": Y, "W": W, "b": b}


L1 = Assignment(
    name="l1-regression",
    title="f = sum |X W + b - Y|",
    inputs=("X", "Y"),
    parameters=("W", "b"),
    shapes=lambda s: {"X": (s.batch, s.n_feature), "Y": (s.batch, s.n_output), "W": (s.n_feature, s.n_output),
                      "b": (s.n_output,)},
    draw=_l1_draw,
    loss=_l1_loss,
    reference=_l1_gradients,
    smooth=False,
    fixed_sizes={"n_hidden": 1},
)


def test_one_sided_differences_find_a_residual_at_its_kink() -> None:
    args = L1.tensors(Case(Sizes(3, 2, 1, 2), seed=4))
    args["Y"][0] = args["X"][0] @ args["W"] + args["b"]
    masks = one_sided_kinks(L1, args)
    assert masks is not None
    assert masks["b"].all()  # every b_k moves row 0's residual, which sits at 0
    far = {**args, "Y": args["Y"] + 1000.0}
    assert one_sided_kinks(L1, far) is None


def test_a_hookless_kinked_loss_never_blames_the_other_subgradient() -> None:
    def other_subgradient(X, Y, W, b):  # sign'(0) taken as +1, as `r >= 0` would
        r = torch.where(X @ W + b - Y >= 0, 1.0, -1.0).to(X.dtype)
        return {"W": X.T @ r, "b": r.sum(0)}

    def wrong(X, Y, W, b):
        r = torch.sign(X @ W + b - Y)
        return {"W": X.T @ r, "b": r.mean(0)}

    assert check_formulas(other_subgradient, assignment=L1, max_examples=60, seed=0).passed
    result = check_formulas(wrong, assignment=L1, max_examples=30, seed=0)
    assert {p for p, r in result.parameters.items() if not r.passed} == {"b"}
