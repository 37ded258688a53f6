"""Every bundled assignment passes its correct gradients and fails each of its wrong variants where it should.

A wrong variant replaces one or two of the correct formulas; the test asserts which parameters fail and
that the others still pass, so a variant can neither be missed nor blamed on the wrong parameter. Cases are
few (the mistakes are gross enough to show in the first handful) to keep the module fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from torch import Tensor
from torch.nn import functional

from gradcheckers import strategies
from gradcheckers.assignment import Case, Sizes, available_assignments, get_assignment
from gradcheckers.errors import InvalidArgument
from gradcheckers.property import check_formulas

ROOT = Path(__file__).resolve().parents[1]
SUBMISSIONS = Path(__file__).with_name("submissions")
TEMPLATE = ROOT / "gradcheckers" / "examples" / "assignments" / "template.py"
CORRECT_EXAMPLES = 60
WRONG_EXAMPLES = 25

Formulas = Callable[..., Mapping[str, object]]


def _override(name: str, **wrong: Callable[..., object]) -> dict[str, Callable[..., object]]:
    """The assignment's correct formulas with some replaced by wrong ones."""
    assignment = get_assignment(name)
    def entry(parameter: str) -> Callable[..., object]:
        return lambda *args: assignment.reference(*args)[parameter]

    return {**{p: entry(p) for p in assignment.parameters}, **wrong}


# -- the two-layer variants ------------------------------------------------------------------------------


def _two_layer(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor, act: str, mean: bool = False):
    H = X @ W1 + b1
    Hs = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}[act](H)
    G = -2 * (Y - (Hs @ W2 + b2))
    if mean:
        G = G / Y.numel()
    return H, Hs, G


def tanh_sigmoid_derivative(X, Y, W1, b1, W2, b2):
    _, Hs, G = _two_layer(X, Y, W1, b1, W2, b2, "tanh")
    return X.T @ ((G @ W2.T) * Hs * (1 - Hs))  # sigma'(h) where tanh'(h) = 1 - tanh(h)^2 belongs


def tanh_b1_from_sigmoid_derivative(X, Y, W1, b1, W2, b2):
    _, Hs, G = _two_layer(X, Y, W1, b1, W2, b2, "tanh")
    return ((G @ W2.T) * Hs * (1 - Hs)).sum(0)


def tanh_b2_mean(X, Y, W1, b1, W2, b2):
    return _two_layer(X, Y, W1, b1, W2, b2, "tanh")[2].mean(0)  # the loss sums over the batch


def tanh_W2_transposed(X, Y, W1, b1, W2, b2):
    _, Hs, G = _two_layer(X, Y, W1, b1, W2, b2, "tanh")
    return G.T @ Hs  # the nn.Linear layout, (n_output, n_hidden)


def relu_no_mask(X, Y, W1, b1, W2, b2):
    _, _, G = _two_layer(X, Y, W1, b1, W2, b2, "relu")
    return X.T @ (G @ W2.T)  # relu'(H) forgotten


def relu_inverted_mask(X, Y, W1, b1, W2, b2):
    H, _, G = _two_layer(X, Y, W1, b1, W2, b2, "relu")
    return ((G @ W2.T) * (H < 0)).sum(0)


def relu_W2_from_pre_activation(X, Y, W1, b1, W2, b2):
    H, _, G = _two_layer(X, Y, W1, b1, W2, b2, "relu")
    return H.T @ G  # H where Hs = relu(H) belongs


def mse_mean_as_sum(X, Y, W1, b1, W2, b2):
    _, Hs, G = _two_layer(X, Y, W1, b1, W2, b2, "sigmoid")
    return Hs.T @ G  # the sum's gradient: the mean's factor 1 / (batch * n_output) is missing


def mse_mean_over_batch_only(X, Y, W1, b1, W2, b2):
    _, _, G = _two_layer(X, Y, W1, b1, W2, b2, "sigmoid")
    return G.sum(0) / Y.shape[0]  # divides by the batch, not by batch * n_output


def mse_mean_W1_without_mean(X, Y, W1, b1, W2, b2):
    _, Hs, G = _two_layer(X, Y, W1, b1, W2, b2, "sigmoid")
    return X.T @ ((G @ W2.T) * Hs * (1 - Hs))


# -- the softmax classifier ------------------------------------------------------------------------------


def _softmax(X, y, W1, b1, W2, b2, dim: int = 1):
    H = X @ W1 + b1
    Hs = torch.relu(H)
    S = Hs @ W2 + b2
    G = torch.softmax(S, dim=dim) - functional.one_hot(y, S.shape[1]).to(S.dtype)
    return H, Hs, G


def softmax_b2_mean(X, y, W1, b1, W2, b2):
    return _softmax(X, y, W1, b1, W2, b2)[2].mean(0)


def softmax_no_relu_mask(X, y, W1, b1, W2, b2):
    _, _, G = _softmax(X, y, W1, b1, W2, b2)
    return X.T @ (G @ W2.T)


def softmax_W2_from_pre_activation(X, y, W1, b1, W2, b2):
    H, _, G = _softmax(X, y, W1, b1, W2, b2)
    return H.T @ G


def softmax_over_the_batch(X, y, W1, b1, W2, b2):
    _, Hs, G = _softmax(X, y, W1, b1, W2, b2, dim=0)  # normalized over samples instead of classes
    return Hs.T @ G


def softmax_forgot_onehot(X, y, W1, b1, W2, b2):
    G = _softmax(X, y, W1, b1, W2, b2)[2]
    return (G + functional.one_hot(y, G.shape[1]).to(G.dtype)).sum(0)  # dS = P, the label's -1 forgotten


# -- logistic regression ---------------------------------------------------------------------------------


def _dz(X, y, w, b):
    return torch.sigmoid(X @ w + b) - y


def logistic_b_scalar(X, y, w, b):
    return _dz(X, y, w, b).sum()  # shape (), b has shape (1,)


def logistic_w_sign(X, y, w, b):
    return X.T @ (y - torch.sigmoid(X @ w + b))


def logistic_w_mean(X, y, w, b):
    return X.T @ _dz(X, y, w, b) / X.shape[0]


def logistic_w_squared_error(X, y, w, b):
    p = torch.sigmoid(X @ w + b)
    return X.T @ ((p - y) * p * (1 - p))  # the gradient of the squared error, not of the cross-entropy


# (assignment, variant name, wrong formulas, parameters that must fail, expected reason of the first)
WRONG: list[tuple[str, str, dict[str, Callable[..., object]], set[str], str]] = [
    ("two-layer-tanh", "sigmoid-derivative", {"W1": tanh_sigmoid_derivative, "b1": tanh_b1_from_sigmoid_derivative},
     {"W1", "b1"}, "mismatch"),
    ("two-layer-tanh", "b2-mean", {"b2": tanh_b2_mean}, {"b2"}, "mismatch"),
    ("two-layer-tanh", "W2-transposed", {"W2": tanh_W2_transposed}, {"W2"}, "shape"),
    ("two-layer-relu", "no-mask", {"W1": relu_no_mask}, {"W1"}, "mismatch"),
    ("two-layer-relu", "inverted-mask", {"b1": relu_inverted_mask}, {"b1"}, "mismatch"),
    ("two-layer-relu", "W2-from-H", {"W2": relu_W2_from_pre_activation}, {"W2"}, "mismatch"),
    ("two-layer-mse-mean", "sum-gradient", {"W2": mse_mean_as_sum}, {"W2"}, "mismatch"),
    ("two-layer-mse-mean", "mean-over-batch-only", {"b2": mse_mean_over_batch_only}, {"b2"}, "mismatch"),
    ("two-layer-mse-mean", "W1-without-mean", {"W1": mse_mean_W1_without_mean}, {"W1"}, "mismatch"),
    ("softmax-classifier", "b2-mean", {"b2": softmax_b2_mean}, {"b2"}, "mismatch"),
    ("softmax-classifier", "no-relu-mask", {"W1": softmax_no_relu_mask}, {"W1"}, "mismatch"),
    ("softmax-classifier", "W2-from-scores-before-relu", {"W2": softmax_W2_from_pre_activation}, {"W2"}, "mismatch"),
    ("softmax-classifier", "softmax-over-batch", {"W2": softmax_over_the_batch}, {"W2"}, "mismatch"),
    ("softmax-classifier", "forgot-onehot", {"b2": softmax_forgot_onehot}, {"b2"}, "mismatch"),
    ("logistic-regression", "b-scalar", {"b": logistic_b_scalar}, {"b"}, "shape"),
    ("logistic-regression", "w-sign", {"w": logistic_w_sign}, {"w"}, "mismatch"),
    ("logistic-regression", "w-mean", {"w": logistic_w_mean}, {"w"}, "mismatch"),
    ("logistic-regression", "w-squared-error", {"w": logistic_w_squared_error}, {"w"}, "mismatch"),
]
SHIPPED = ("two-layer-tanh", "two-layer-relu", "two-layer-mse-mean", "softmax-classifier", "logistic-regression")


@pytest.mark.parametrize("name", SHIPPED)
def test_the_correct_reference_passes(name: str) -> None:
    assignment = get_assignment(name)
    result = check_formulas(assignment.reference, assignment=name, max_examples=CORRECT_EXAMPLES, seed=0)
    assert result.passed, {p: r.message for p, r in result.parameters.items() if not r.passed}
    assert result.assignment == name
    assert set(result.parameters) == set(assignment.parameters)


@pytest.mark.parametrize(("name", "variant", "wrong", "failing", "reason"), WRONG,
                         ids=[f"{w[0]}:{w[1]}" for w in WRONG])
def test_a_wrong_variant_fails_for_the_right_parameter(
    name: str, variant: str, wrong: dict[str, Callable[..., object]], failing: set[str], reason: str
) -> None:
    result = check_formulas(_override(name, **wrong), assignment=name, max_examples=WRONG_EXAMPLES, seed=0)
    failed = {p for p, r in result.parameters.items() if not r.passed}
    assert failed == failing, {p: r.message for p, r in result.parameters.items()}
    for parameter in failing:
        assert result.parameters[parameter].reason == reason, result.parameters[parameter].message


def test_every_wrong_variant_table_covers_each_shipped_assignment_at_least_three_times() -> None:
    for name in SHIPPED:
        assert sum(1 for w in WRONG if w[0] == name) >= 3, name


def test_the_new_assignments_are_bundled_and_described() -> None:
    names = available_assignments()
    for name in ("softmax-classifier", "logistic-regression"):
        assert name in names
        assignment = get_assignment(name)
        assert assignment.name == name and assignment.title


# -- what the assignments draw ---------------------------------------------------------------------------


@settings(max_examples=40)
@given(strategies.cases("softmax-classifier"))
def test_softmax_cases_have_at_least_two_classes_and_labels_in_range(case: Case) -> None:
    assignment = get_assignment("softmax-classifier")
    assert case.sizes.n_output >= 2
    args = assignment.tensors(case)
    assert args["y"].dtype == torch.int64
    assert args["y"].shape == (case.sizes.batch,)
    assert 0 <= int(args["y"].min()) and int(args["y"].max()) < case.sizes.n_output
    shapes = assignment.shapes(case.sizes)
    assert {k: tuple(v.shape) for k, v in args.items()} == shapes


@settings(max_examples=40)
@given(strategies.cases("logistic-regression", stress=True))
def test_logistic_cases_hold_unused_sizes_at_one_and_keep_binary_labels(case: Case) -> None:
    assignment = get_assignment("logistic-regression")
    assert case.sizes.n_hidden == 1 and case.sizes.n_output == 1
    args = assignment.tensors(case)
    assert args["b"].shape == (1,) and args["w"].shape == (case.sizes.n_feature,)
    assert set(args["y"].unique().tolist()) <= {0.0, 1.0}  # labels are never scaled with the data
    assert args["y"].dtype == getattr(torch, case.dtype)


def test_a_softmax_failure_is_never_diagnosed_by_shrinking_to_one_class() -> None:
    result = check_formulas(_override("softmax-classifier", b2=softmax_b2_mean), assignment="softmax-classifier",
                            max_examples=WRONG_EXAMPLES, seed=0, parameters=["b2"])
    b2 = result.parameters["b2"]
    assert not b2.passed and b2.counterexample is not None
    assert b2.counterexample.sizes.n_output >= 2
    assert "one output" not in (b2.diagnosis or "")


# -- an instructor's own definition file -----------------------------------------------------------------


def test_the_template_loads_by_path_and_by_path_and_name() -> None:
    by_path = get_assignment(str(TEMPLATE))
    by_name = get_assignment(f"{TEMPLATE}:ASSIGNMENT")
    assert by_path.name == by_name.name == "ridge-regression"
    assert by_path.parameters == ("W", "b")


def test_the_template_passes_its_gradients_and_fails_a_forgotten_regularizer() -> None:
    spec = str(TEMPLATE)
    assignment = get_assignment(spec)

    def float32_formulas(X, Y, W, b):  # written independently, computed in the case's own dtype
        R = torch.einsum("nf,fo->no", X, W) + b - Y
        return {"W": 2 * (X.T @ R + 0.1 * W), "b": 2 * R.sum(0)}

    def no_regularizer(X, Y, W, b):
        return 2 * X.T @ (X @ W + b - Y)

    assert check_formulas(assignment.reference, assignment=spec, max_examples=CORRECT_EXAMPLES).passed
    assert check_formulas(float32_formulas, assignment=spec, max_examples=CORRECT_EXAMPLES).passed
    result = check_formulas({"W": no_regularizer, "b": lambda *a: float32_formulas(*a)["b"]}, assignment=spec,
                            max_examples=WRONG_EXAMPLES)
    assert not result.parameters["W"].passed and result.parameters["b"].passed


def test_a_definition_file_without_an_assignment_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.py"
    path.write_text("X = 1\n")
    with pytest.raises(InvalidArgument, match="defines no Assignment named ASSIGNMENT"):
        get_assignment(str(path))


# -- end to end: the command line and the plugin ----------------------------------------------------------


def test_gradcheckers_check_runs_the_softmax_assignment(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "gradcheckers", "check", str(SUBMISSIONS / "assign_softmax.py"),
               "--assignment", "softmax-classifier", "--examples", "15", "--json", str(report), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(report.read_text())
    assert data["assignment"] == "softmax-classifier"
    assert sorted(data["parameters"]) == ["W1", "W2", "b1", "b2"]
    assert all(p["passed"] for p in data["parameters"].values())


def test_the_plugin_runs_the_logistic_assignment(pytester: pytest.Pytester) -> None:
    submission = SUBMISSIONS / "assign_logistic.py"
    result = pytester.runpytest_subprocess(
        "-p", "gradcheckers", f"--gradcheckers-submission={submission}",
        "--gradcheckers-assignment=logistic-regression", "--gradcheckers-examples=15", "-p", "no:cacheprovider",
        "--gradcheckers-devices=cpu",  # the submission computes in numpy: CPU only
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*w: passed (* cases)*", "*b: passed (* cases)*"])


def test_the_plugin_fails_a_wrong_logistic_submission(pytester: pytest.Pytester) -> None:
    wrong = pytester.makepyfile(student="""
        def grad_w(X, y, w, b):
            return X.T @ (y - (X @ w + b).sigmoid())

        def grad_b(X, y, w, b):
            return ((X @ w + b).sigmoid() - y).sum(0, keepdim=True)
        """)
    result = pytester.runpytest_subprocess(
        "-p", "gradcheckers", f"--gradcheckers-submission={wrong}", "--gradcheckers-assignment=logistic-regression",
        "--gradcheckers-examples=10", "-p", "no:cacheprovider",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*w: FAILED (mismatch)*"])


def test_case_sizes_of_a_fixed_size_are_the_fixed_value() -> None:
    assignment = get_assignment("logistic-regression")
    args = assignment.tensors(Case(Sizes(3, 2, 1, 1)))
    assert tuple(args["X"].shape) == (3, 2)
