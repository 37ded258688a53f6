"""check_backward / assert_backward: a course's forward and backward, checked as written (numpy or torch)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gradcheckers import GradientMismatchError, Hyperparameter, InvalidArgument, assert_backward, check_backward, labels
from gradcheckers.backward import ReferenceFailure

README = Path(__file__).parent.parent / "README.md"
AFFINE_INPUTS = {"x": ("N", "D"), "w": ("D", "M"), "b": ("M",)}


def _readme_layer_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### 4. Layers", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_has_three_layer_examples() -> None:
    assert len(_readme_layer_examples()) == 3


@pytest.mark.parametrize("index", range(3))
def test_each_readme_layer_example_runs_as_written(index: int) -> None:
    code = _readme_layer_examples()[index]
    for line in code.splitlines():  # the point of the API: a published layer in a few lines of ours
        assert len(line) <= 120
    exec(compile(code, f"README-layer-example-{index}", "exec"), {"__name__": "readme"})


# -- the calling conventions ------------------------------------------------------------------------------------


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    return x @ w + b, (x, w)


def affine_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def test_a_correct_numpy_layer_passes_on_its_own_forward_s_differences() -> None:
    result = check_backward(affine_forward, affine_backward, AFFINE_INPUTS, max_examples=40)
    assert result.passed and result.examples == 40, result.message


def test_a_bias_gradient_not_summed_fails_at_b_with_two_samples() -> None:
    def backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
        dx, dw, _ = affine_backward(dout, cache)
        return dx, dw, dout[0]

    result = check_backward(affine_forward, backward, AFFINE_INPUTS, max_examples=40)
    assert not result.passed and result.parameters == ("b",)
    assert result.counterexample is not None
    assert result.counterexample.sizes.as_dict() == {"N": 2, "D": 1, "M": 1}
    assert "backward's db disagrees" in result.message and "N=2, D=1, M=1" in result.message
    with pytest.raises(GradientMismatchError, match="N=2, D=1, M=1"):
        assert_backward(affine_forward, backward, AFFINE_INPUTS, max_examples=40)


def test_a_backward_that_ignores_the_upstream_gradient_fails() -> None:
    # With dout all ones (loss = out.sum()) this backward would pass: the upstream gradient must be random.
    def backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
        return affine_backward(np.ones_like(dout), cache)

    result = check_backward(affine_forward, backward, AFFINE_INPUTS, max_examples=20)
    assert not result.passed and result.parameters[0] == "x"
    assert result.counterexample is not None and result.counterexample.sizes.as_dict() == {"N": 1, "D": 1, "M": 1}


def test_gradients_may_come_back_as_a_mapping_by_name_or_by_d_name() -> None:
    def backward(dout: np.ndarray, cache: Any) -> dict[str, np.ndarray]:
        dx, dw, db = affine_backward(dout, cache)
        return {"dx": dx, "w": dw, "db": db}

    assert check_backward(affine_forward, backward, AFFINE_INPUTS, max_examples=10).passed


def test_a_forward_without_a_cache_gives_backward_the_inputs_and_hyperparameters() -> None:
    def forward(x: np.ndarray, alpha: float) -> np.ndarray:
        return np.where(x > 0, x, alpha * x)

    def backward(dout: np.ndarray, x: np.ndarray, alpha: float) -> np.ndarray:
        return dout * np.where(x > 0, 1.0, alpha)

    result = check_backward(forward, backward, {"x": ("N", "D")},
                            hyperparameters={"alpha": Hyperparameter.floats(0.01, 0.3)}, max_examples=30)
    assert result.passed, result.message


def test_torch_layers_are_checked_against_autograd_of_their_own_forward() -> None:
    def forward(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return torch.tanh(x @ w), (x, w)

    def backward(dout: torch.Tensor, cache: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, w = cache
        da = dout * (1 - torch.tanh(x @ w) ** 2)
        return da @ w.T, x.T @ da

    def wrong(dout: torch.Tensor, cache: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, w = cache
        return dout @ w.T, x.T @ dout  # tanh's derivative forgotten

    inputs = {"x": ("N", "D"), "w": ("D", "M")}
    assert check_backward(forward, backward, inputs, framework="torch", max_examples=20).passed
    result = check_backward(forward, wrong, inputs, framework="torch", max_examples=20)
    assert not result.passed and result.parameters[0] == "x"


def test_a_relu_kink_within_reach_of_the_differences_is_inconclusive_not_wrong() -> None:
    def forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.maximum(x, 0), x

    def draw(sizes: Any, rng: np.random.Generator) -> np.ndarray:
        x = rng.standard_normal((sizes.N,))
        x[0] = 3e-6  # inside the step (1e-5) of the central differences
        return x

    result = check_backward(forward, lambda dout, x: dout * (x > 0), {"x": draw}, sizes={"N": (1, 4)},
                            max_examples=20)
    assert result.passed and result.inconclusive > 0, result.message


def test_a_safety_epsilon_in_the_loss_is_named_as_the_likely_cause() -> None:
    def softmax_loss(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        p = np.exp(x - x.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        n = len(y)
        loss = -np.log(p[np.arange(n), y] + 1e-8).mean()  # the epsilon changes the loss ...
        p[np.arange(n), y] -= 1
        return loss, p / n  # ... but not the gradient formula, which is log(p)'s

    result = check_backward(softmax_loss, lambda dout, dx: dout * dx, {"x": ("N", "C"), "y": labels(("N",), "C")},
                            sizes={"C": (2, 4)}, max_examples=30)
    assert not result.passed and result.parameters == ("x",)
    assert "the loss differentiated must be the loss the formula differentiates" in result.message


def test_a_forward_that_differs_from_the_reference_fails_at_forward() -> None:
    def forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = 1 / (1 + np.exp(-x)) + 1e-9  # a translation slip: the forward is not the reference's
        return out, out

    result = check_backward(forward, lambda dout, s: dout * s * (1 - s), {"x": ("N",)}, reference=torch.sigmoid,
                            max_examples=20)
    assert not result.passed and result.parameters[0] == "forward"
    assert "forward's output disagrees" in result.message


def test_a_failure_inside_the_reference_is_never_the_student_s() -> None:
    def reference(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("grad_weight must be contiguous")

    with pytest.raises(ReferenceFailure, match=r"the reference forward reference failed .*contiguous"):
        check_backward(lambda x: (x * 2, None), lambda dout, c: 2 * dout, {"x": ("N",)}, reference=reference,
                       max_examples=5)


@pytest.mark.parametrize(
    ("forward", "backward", "reason", "text"),
    [
        pytest.param(lambda x: 1 / 0, lambda dout, c: dout, "error", "forward raised ZeroDivisionError", id="forward"),
        pytest.param(lambda x: (x, x), lambda dout, c: [][1], "error", "backward raised IndexError", id="backward"),
        pytest.param(lambda x: (x.__imul__(2), x), lambda dout, c: dout, "mutated-input",
                     "forward modified its input(s) x in place", id="in-place"),
        pytest.param(lambda x: (x, x), lambda dout, c: (dout, dout), "error", "backward returned 2 gradient(s); "
                     "expected 1 (dx)", id="count"),
        pytest.param(lambda x: (x, x), lambda dout, c: {"y": dout}, "missing", "without 'x'", id="mapping"),
    ],
)
def test_a_student_s_crash_is_a_failure_with_a_message(forward: Any, backward: Any, reason: str, text: str) -> None:
    result = check_backward(forward, backward, {"x": ("N",)}, max_examples=5)
    assert not result.passed and result.failures[0].reason == reason
    assert text in result.message


@pytest.mark.parametrize(
    ("options", "text"),
    [
        pytest.param({"inputs": {}}, "must be a non-empty mapping", id="no-inputs"),
        pytest.param({"inputs": {"x": ("N", 1.5)}}, "inputs['x']", id="bad-shape"),
        pytest.param({"wrt": ["z"]}, "wrt=['z']", id="unknown-wrt"),
        pytest.param({"max_examples": 0}, "max_examples=0", id="no-examples"),
        pytest.param({"framework": "jax"}, "framework='jax'", id="framework"),
        pytest.param({"sizes": {"N": (3, 2)}}, "min_N=3", id="bounds"),
        pytest.param({"rtol": 1e-3}, "give both or neither", id="rtol-alone"),
    ],
)
def test_bad_arguments_are_one_line_errors(options: dict[str, Any], text: str) -> None:
    inputs = options.pop("inputs", {"x": ("N",)})
    with pytest.raises(InvalidArgument) as error:
        check_backward(lambda x: (x, x), lambda dout, c: dout, inputs, **options)
    assert text in str(error.value) and "\n" not in str(error.value)


def test_the_same_seed_gives_the_same_result() -> None:
    def backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
        dx, dw, db = affine_backward(dout, cache)
        return dx, dw * 1.001, db

    first = check_backward(affine_forward, backward, AFFINE_INPUTS, max_examples=20, seed=3)
    second = check_backward(affine_forward, backward, AFFINE_INPUTS, max_examples=20, seed=3)
    assert first == second and not first.passed


# -- messages name the references actually used ----------------------------------------------------------------


def _bias_not_summed(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    dx, dw, _ = affine_backward(dout, cache)
    return dx, dw, dout[0]


def _nan_dx(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, ...]:
    dx, dw, db = affine_backward(dout, cache)
    return dx * np.nan, dw, db


@pytest.mark.parametrize("backward", [_bias_not_summed, _nan_dx], ids=["mismatch", "non-finite"])
def test_a_numpy_forward_s_messages_name_central_differences_and_never_autograd(backward: Any) -> None:
    # Without a torch reference, the one reference is central differences of the numpy forward: no autograd ran.
    result = check_backward(affine_forward, backward, AFFINE_INPUTS, max_examples=20)
    assert not result.passed
    assert "autograd" not in result.message and "finite differences (which agree" not in result.message
    assert "central differences of the forward" in result.failures[0].summary + result.failures[0].details


def test_a_forward_checked_against_the_reference_names_the_reference_forward_not_autograd() -> None:
    def forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = 1 / (1 + np.exp(-x)) * 1.01  # not the reference's function
        return out, out

    result = check_backward(forward, lambda dout, s: dout * s * (1 - s), {"x": ("N",)}, reference=torch.sigmoid,
                            max_examples=20)
    failure = result.failures[0]
    assert failure.parameter == "forward" and "autograd" not in failure.message
    assert "forward's output disagrees with the reference forward" in failure.summary
    assert "reference forward" in failure.details.split("Worst element", 1)[1].splitlines()[0]



def test_a_cancelling_float32_forward_is_judged_by_the_reference_s_own_spread_in_float32() -> None:
    # The word2vec layer's loss, logsumexp(s) - s[y], is a difference of terms of size ~1: near a confident
    # prediction it is tiny, and its float32 value is off far beyond a rounding of its own size in every correct
    # writing (3 of 2,000 slow cases failed when the forward's allowance scaled with the output alone).
    from gradcheckers.forward_verdict import forward_spread, judge_forward, reference_forward
    from gradcheckers.tolerance import Tolerance

    def loss(s: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(s, 0) - s[0]

    s32 = torch.tensor([10.0, -0.3, 0.2], dtype=torch.float32)
    got = (torch.log(torch.exp(s32).sum()) - s32[0]).double()  # a correct writing, rounded in float32
    ref = reference_forward(loss, [s32], {})
    runs = []
    spread = lambda: runs.append(1) or forward_spread(loss, [s32], {}, torch.float32, ref)
    assert abs(float(got - ref)) > 1e-4 * float(ref)  # the cancellation is real
    assert judge_forward(got, ref, torch.float32, Tolerance(), "case").status == "fail"  # the old allowance
    verdict = judge_forward(got, ref, torch.float32, Tolerance(), "case", spread)
    assert verdict.status == "pass", verdict.details
    assert runs == [1]  # the spread's random-rounding runs were needed here ...
    assert judge_forward(ref, ref, torch.float32, Tolerance(), "case", spread).status == "pass"
    assert runs == [1]  # ... and not for an output that agrees without them
    wrong = ref * 1.5  # a forward bug changes the output by a term's share, not by a rounding
    assert judge_forward(wrong, ref, torch.float32, Tolerance(), "case", spread).status == "fail"
