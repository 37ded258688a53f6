"""models.two_layer and models.seed: the convention mapping, the loss, the correct and the seed's formulas."""

from __future__ import annotations

import pytest
import torch
from gradcheckers.models import seed as seed_formulas
from gradcheckers.models import two_layer
from gradcheckers.models.two_layer import (
    PARAMETERS,
    TwoLayerNet,
    forward,
    gradients,
    loss,
    math_from_module,
    parameter_shapes,
    state_dict_from_math,
)
from torch import nn

from gradcheckers import Case, Sizes

SIZES = [Sizes(1, 1, 1, 1), Sizes(1, 1, 20, 1), Sizes(2, 3, 4, 2), Sizes(7, 5, 3, 4), Sizes(40, 8, 32, 4)]


def _args(sizes: Sizes, seed: int = 0, dtype: str = "float64") -> dict[str, torch.Tensor]:
    return two_layer.SIGMOID.tensors(Case(sizes, dtype=dtype, seed=seed))


def _params(args: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: args[name] for name in PARAMETERS}


def _call(formula, args: dict[str, torch.Tensor]) -> torch.Tensor:
    return formula(*(args[name] for name in two_layer.SIGMOID.arguments))


# --------------------------------------------------------------------------------------------------------
# The math convention and nn.Linear


def test_math_from_module_gives_the_course_shapes() -> None:
    net = TwoLayerNet(3, 5, 2)
    math = math_from_module(net)
    assert {name: tuple(t.shape) for name, t in math.items()} == parameter_shapes(3, 5, 2)
    assert parameter_shapes(3, 5, 2) == {"W1": (3, 5), "b1": (5,), "W2": (5, 2), "b2": (2,)}


def test_math_from_module_transposes_the_linear_weights() -> None:
    net = TwoLayerNet(3, 5, 2)
    math = math_from_module(net)
    assert torch.equal(math["W1"], net.linear1.weight.T)
    assert torch.equal(math["W2"], net.linear2.weight.T)
    assert torch.equal(math["b1"], net.linear1.bias)
    assert torch.equal(math["b2"], net.linear2.bias)


@pytest.mark.parametrize("sizes", SIZES, ids=str)
def test_a_state_dict_from_math_gives_the_network_the_math_forward(sizes: Sizes) -> None:
    args = _args(sizes)
    net = TwoLayerNet(sizes.n_feature, sizes.n_hidden, sizes.n_output).double()
    net.load_state_dict(state_dict_from_math(**_params(args)))

    with torch.no_grad():
        torch.testing.assert_close(net(args["X"]), forward(args["X"], **_params(args))[2])


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_the_mapping_round_trips_through_the_network(activation: str) -> None:
    torch.manual_seed(0)
    net = TwoLayerNet(4, 6, 3, activation)
    rebuilt = TwoLayerNet(4, 6, 3, activation)
    rebuilt.load_state_dict(state_dict_from_math(**math_from_module(net)))

    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), rebuilt.state_dict().values()))
    math = _params(_args(Sizes(2, 4, 6, 3)))
    rebuilt.double().load_state_dict(state_dict_from_math(**math))
    assert all(torch.equal(math_from_module(rebuilt)[name], math[name]) for name in PARAMETERS)


def test_the_network_is_linear_activation_linear_with_biases() -> None:
    net = TwoLayerNet(1, 20, 1)
    assert [type(m) for m in net.children()] == [nn.Linear, nn.Sigmoid, nn.Linear]
    assert net.linear1.bias is not None and net.linear2.bias is not None


# --------------------------------------------------------------------------------------------------------
# The loss


def test_the_loss_is_the_sum_of_squares_not_the_mean() -> None:
    Y = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    Y_pred = torch.zeros_like(Y)
    assert loss(Y, Y_pred).item() == 30.0
    assert loss(Y, Y_pred, reduction="mean").item() == 7.5


def test_the_loss_matches_mse_loss_with_reduction_sum() -> None:
    args = _args(Sizes(5, 3, 4, 2))
    Y_pred = forward(args["X"], **_params(args))[2]
    assert loss(args["Y"], Y_pred) == nn.functional.mse_loss(Y_pred, args["Y"], reduction="sum")
    assert loss(args["Y"], Y_pred, "mean") == nn.functional.mse_loss(Y_pred, args["Y"])


# --------------------------------------------------------------------------------------------------------
# The correct gradients


def _autograd(args: dict[str, torch.Tensor], activation: str, reduction: str) -> dict[str, torch.Tensor]:
    leaves = {name: args[name].clone().requires_grad_(True) for name in PARAMETERS}
    f = loss(args["Y"], forward(args["X"], **leaves, activation=activation)[2], reduction)
    return dict(zip(PARAMETERS, torch.autograd.grad(f, list(leaves.values()))))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("sizes", SIZES, ids=str)
def test_the_correct_gradients_equal_autograd(sizes: Sizes, activation: str, reduction: str) -> None:
    args = _args(sizes, seed=3)
    expected = _autograd(args, activation, reduction)

    got = gradients(**args, activation=activation, reduction=reduction)

    shapes = parameter_shapes(sizes.n_feature, sizes.n_hidden, sizes.n_output)
    assert {name: tuple(g.shape) for name, g in got.items()} == shapes
    for name in PARAMETERS:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize("sizes", SIZES, ids=str)
def test_autograd_through_the_course_network_equals_autograd_of_the_math(sizes: Sizes) -> None:
    args = _args(sizes, seed=5)
    through_network = two_layer.autograd_gradients(args["X"], args["Y"], args)
    for name in PARAMETERS:
        torch.testing.assert_close(through_network[name], _autograd(args, "sigmoid", "sum")[name], msg=name)


@pytest.mark.parametrize("name", PARAMETERS)
def test_each_grad_function_returns_its_entry_of_gradients(name: str) -> None:
    args = _args(Sizes(3, 2, 4, 2))
    assert torch.equal(_call(getattr(two_layer, f"grad_{name}"), args), gradients(**args)[name])


def test_the_correct_gradients_stay_finite_where_exp_overflows() -> None:
    """sigma' is written s(1 - s): pre-activations of +-1e4 give 0, not inf / inf."""
    args = _args(Sizes(4, 2, 3, 1), seed=1, dtype="float32")
    args["X"] = args["X"] * 1e4
    assert all(bool(torch.isfinite(g).all()) for g in gradients(**args).values())


# --------------------------------------------------------------------------------------------------------
# The seed's formulas: right at batch 1 (values, not shapes), wrong at batch 2


SEED_FORMULAS = {name: getattr(seed_formulas, f"grad_{name}") for name in PARAMETERS}


@pytest.mark.parametrize("name", PARAMETERS)
@pytest.mark.parametrize("sizes", [Sizes(1, 1, 20, 1), Sizes(1, 3, 4, 2)], ids=str)
def test_the_seed_formulas_have_the_right_values_at_batch_1(name: str, sizes: Sizes) -> None:
    args = _args(sizes, seed=2)
    expected = gradients(**args)[name]
    got = _call(SEED_FORMULAS[name], args)
    torch.testing.assert_close(got.reshape(expected.shape), expected)


def test_the_seed_bias_gradients_have_a_batch_axis_at_batch_1() -> None:
    args = _args(Sizes(1, 1, 20, 1))
    assert tuple(_call(SEED_FORMULAS["b1"], args).shape) == (1, 20)
    assert tuple(_call(SEED_FORMULAS["b2"], args).shape) == (1, 1)
    # ... which is what made the homework's torch.allclose say yes: (1, 20) broadcasts against (20,).
    assert torch.allclose(_call(SEED_FORMULAS["b1"], args), gradients(**args)["b1"])


def test_at_batch_2_the_seed_bias_gradients_are_the_unsummed_per_sample_gradients() -> None:
    args = _args(Sizes(2, 3, 4, 2), seed=4)
    correct = gradients(**args)
    torch.testing.assert_close(_call(SEED_FORMULAS["b1"], args).sum(0), correct["b1"])
    torch.testing.assert_close(_call(SEED_FORMULAS["b2"], args).sum(1), correct["b2"])  # (n_output, batch)
    assert tuple(_call(SEED_FORMULAS["b1"], args).shape) == (2, 4)
    assert tuple(_call(SEED_FORMULAS["b2"], args).shape) == (2, 2)


def test_at_batch_2_the_seed_W1_has_the_right_shape_by_accident_and_the_wrong_values() -> None:
    args = _args(Sizes(2, 2, 3, 1), seed=4)  # n_feature == batch: (f, h) * (n, h) broadcasts to (f, h)
    got = _call(SEED_FORMULAS["W1"], args)
    expected = gradients(**args)["W1"]
    assert got.shape == expected.shape
    assert not torch.allclose(got, expected)


def test_at_batch_2_the_seed_W2_is_still_right() -> None:
    args = _args(Sizes(2, 3, 4, 2), seed=4)
    torch.testing.assert_close(_call(SEED_FORMULAS["W2"], args), gradients(**args)["W2"])


@pytest.mark.parametrize(("dtype", "h"), [(torch.float32, 89.0), (torch.float64, 710.0)])
def test_the_seed_sigma_prime_overflows_to_nan(dtype: torch.dtype, h: float) -> None:
    assert torch.isnan(seed_formulas._sigmoid_prime(torch.tensor([h], dtype=dtype))).all()
    assert two_layer.ACTIVATIONS["sigmoid"].derivative(torch.tensor(h), torch.sigmoid(torch.tensor(h))) == 0
