"""The default policy on code nobody here wrote: published hand-written backward passes (tests/formulas/
backward.py) in several writings, torch and numpy, float64 and float32. Every correct writing passes on every
random case; every published mistake fails wherever it differs from the correct gradient at all."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from formulas.backward import LAYERS, Layer, batchnorm, batchnorm_compact, batchnorm_forgets_gamma

from gradcheckers import GradientMismatchError, InconclusiveWarning, assert_gradients_agree

CASES = 16  # per writing and dtype in the fast suite; the slow test runs SLOW_CASES
SLOW_CASES = 200
DTYPES = [torch.float64, torch.float32]


def _case(layer: Layer, seed: int, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], torch.Tensor, Callable]:
    """Random sizes (N in 2..8, D in 1..6; the first case N=2, D=1), parameters and upstream gradient."""
    g = torch.Generator().manual_seed(seed)
    n, d = int(torch.randint(2, 9, (1,), generator=g)), int(torch.randint(1, 7, (1,), generator=g))
    if seed == 0:
        n, d = 2, 1
    shapes = layer.shapes(n, d)
    params = {k: (3 * torch.randn(s, generator=g, dtype=torch.float64)).to(dtype) for k, s in shapes.items()}
    dy = torch.randn(layer.forward(**params).shape, generator=g, dtype=torch.float64).to(dtype)
    return params, dy, lambda **p: (layer.forward(**p) * dy).sum()


def _grads(fn: Callable, params: dict[str, torch.Tensor], dy: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v) for k, v in fn(*params.values(), dy).items()}


def _differs(wrong: Callable, correct: Callable, params: dict[str, torch.Tensor], dy: torch.Tensor) -> bool:
    """Whether, in float64, the mistake is off by more than 1e-3 of the largest entry of any gradient (batch
    norm of two samples has dX = 0 whatever gamma is: forgetting gamma changes nothing there)."""
    p64 = {k: v.double() for k, v in params.items()}
    w, r = _grads(wrong, p64, dy.double()), _grads(correct, p64, dy.double())
    scale = max(float(v.abs().max()) for v in r.values())
    return any(float((w[k] - r[k]).abs().max()) > 1e-3 * scale for k in r)


CORRECT = [(layer, name) for layer in LAYERS for name in layer.correct]
WRONG = [(layer, name) for layer in LAYERS for name in layer.wrong]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("layer", "writing"), CORRECT, ids=[f"{la.name}-{w}" for la, w in CORRECT])
def test_every_writing_of_a_correct_backward_pass_passes_on_every_random_case(
    layer: Layer, writing: str, dtype: torch.dtype, cases: int = CASES
) -> None:
    for seed in range(cases):
        params, dy, loss = _case(layer, seed, dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InconclusiveWarning)
            result = assert_gradients_agree(loss, params, _grads(layer.correct[writing], params, dy))
        assert result.passed


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("layer", "mistake"), WRONG, ids=[f"{la.name}-{m}" for la, m in WRONG])
def test_every_published_mistake_fails_wherever_it_changes_the_gradient(
    layer: Layer, mistake: str, dtype: torch.dtype
) -> None:
    """Where the mistake gives the same numbers as a correct writing (layer norm of one feature: its variance
    term is 0) nothing can fail; everywhere else, off by more than 1e-3 of the largest entry, it must."""
    correct = next(iter(layer.correct.values()))
    tried = 0
    for seed in range(CASES):
        params, dy, loss = _case(layer, seed, dtype)
        if not _differs(layer.wrong[mistake], correct, params, dy):
            continue
        tried += 1
        with warnings.catch_warnings(), pytest.raises(GradientMismatchError):
            warnings.simplefilter("ignore", InconclusiveWarning)
            assert_gradients_agree(loss, params, _grads(layer.wrong[mistake], params, dy))
    assert tried >= CASES // 2


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("layer", "writing"), CORRECT, ids=[f"{la.name}-{w}" for la, w in CORRECT])
def test_no_false_alarm_in_200_cases_of_every_writing(layer: Layer, writing: str, dtype: torch.dtype) -> None:
    test_every_writing_of_a_correct_backward_pass_passes_on_every_random_case(layer, writing, dtype, SLOW_CASES)


# --------------------------------------------------------------------------------------------------------
# The observations of the issue, one by one


def test_the_textbook_batch_norm_backward_of_two_samples_of_one_feature_passes_in_float64() -> None:
    """Observed: absolute error 2.7e-16 against an allowance of 7.6e-17 (dX is a sum of terms that cancel to
    exactly 0 for N=2: both samples normalise to +-1 whatever x is)."""
    x = torch.tensor([[0.7], [-1.3]], dtype=torch.float64)
    gamma, beta = torch.tensor([1.9], dtype=torch.float64), torch.tensor([0.2], dtype=torch.float64)
    dy = torch.tensor([[0.8], [-0.4]], dtype=torch.float64)
    params = {"x": x, "gamma": gamma, "beta": beta}
    result = assert_gradients_agree(lambda **p: (batchnorm(**p) * dy).sum(), params,
                                    batchnorm_compact(x, gamma, beta, dy))
    assert result.passed and result.parameters["x"].checked == 2


def test_an_exact_zero_gradient_passes_where_autograd_rounds_to_a_few_ulps() -> None:
    """normalize of one feature: the gradient is exactly 0; a correct formula's terms |dy|/r cancel to a few
    ulps of their size (observed: an allowance of 8.9e-308)."""
    x = torch.tensor([[0.05], [2.0], [-0.3]], dtype=torch.float64)
    dy = torch.tensor([[1.3], [-0.7], [2.1]], dtype=torch.float64)
    r2 = (x * x).sum(-1, keepdim=True)
    grad = dy / r2.sqrt() - x * (x * dy).sum(-1, keepdim=True) / (r2 * r2.sqrt())
    assert_gradients_agree(lambda x: ((x / x.norm(dim=-1, keepdim=True)) * dy).sum(), {"x": x}, {"x": grad})
    assert_gradients_agree(lambda x: ((x / x.norm(dim=-1, keepdim=True)) * dy).sum(), {"x": x},
                           {"x": torch.zeros_like(x)})


@pytest.mark.parametrize("seed", range(20))
def test_a_batch_norm_backward_that_forgets_gamma_fails_under_the_default_policy_and_its_fix_passes(
    seed: int,
) -> None:
    g = torch.Generator().manual_seed(seed)
    n, d = int(torch.randint(3, 9, (1,), generator=g)), int(torch.randint(1, 6, (1,), generator=g))
    x = 3 * torch.randn(n, d, generator=g, dtype=torch.float64)
    gamma = torch.randn(d, generator=g, dtype=torch.float64) + 2.0 * torch.sign(torch.randn(d, generator=g))
    beta = torch.randn(d, generator=g, dtype=torch.float64)
    dy = torch.randn(n, d, generator=g, dtype=torch.float64)
    params = {"x": x, "gamma": gamma, "beta": beta}
    loss = lambda **p: (batchnorm(**p) * dy).sum()

    assert assert_gradients_agree(loss, params, batchnorm_compact(x, gamma, beta, dy)).passed
    with pytest.raises(GradientMismatchError, match=r"^the gradient of x disagrees"):
        assert_gradients_agree(loss, params, batchnorm_forgets_gamma(x, gamma, beta, dy))
