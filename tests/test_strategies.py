"""gradcheckers.strategies: bad arguments are refused eagerly, drawn cases respect their bounds, and a
failing case shrinks to the smallest sizes, float64, cpu and seed 0."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from gradcheckers.models import two_layer
from hypothesis import find, given, settings
from hypothesis import strategies as st

from gradcheckers import Case, CheckSettings, InvalidArgument, Sizes, check_formulas
from gradcheckers import strategies as gst


def deterministic(max_examples: int) -> settings:
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None)




STRING_SPLIT = "a single name is iterated as characters; the message names 'f' or 'c' instead of the argument"
BOOL_SEED = "strategies.seeds and CheckSettings accept bool (isinstance(True, int)); sizes() refuses it"

# (call, the `name=value` its message must contain)
BAD_CALLS: list[tuple[Callable[[], object], str]] = [
    pytest.param(lambda: gst.sizes(min_batch=5, max_batch=2), "min_batch=5", id="min-greater-than-max"),
    pytest.param(lambda: gst.sizes(min_n_feature=3, max_n_feature=2), "max_n_feature=2", id="max-less-than-min"),
    pytest.param(lambda: gst.sizes(min_n_hidden=0), "min_n_hidden=0", id="zero-size"),
    pytest.param(lambda: gst.sizes(max_n_output=-1), "max_n_output=-1", id="negative-size"),
    pytest.param(lambda: gst.sizes(max_batch=True), "max_batch=True", id="bool-size"),
    pytest.param(lambda: gst.sizes(max_batch=2.0), "max_batch=2.0", id="float-size"),
    pytest.param(lambda: gst.cases(sizes=Sizes(0, 1, 1, 1)), "min_batch=0", id="case-of-zero-batch"),
    pytest.param(lambda: gst.dtypes(["float8"]), "dtype='float8'", id="unknown-dtype"),
    pytest.param(lambda: gst.dtypes(["int32"]), "dtype='int32'", id="integer-dtype"),
    pytest.param(lambda: gst.dtypes([]), "include=()", id="no-dtype"),
    pytest.param(lambda: gst.cases(dtype="complex64"), "dtype='complex64'", id="case-of-unknown-dtype"),
    pytest.param(lambda: gst.devices(["tpu"]), "device='tpu'", id="unknown-device"),
    pytest.param(lambda: gst.devices([]), "include=()", id="no-device"),
    pytest.param(lambda: gst.seeds(min_value=-1), "min_value=-1", id="negative-seed"),
    pytest.param(lambda: gst.seeds(min_value=5, max_value=2), "max_value=2", id="seed-min-greater-than-max"),
    pytest.param(lambda: gst.seeds(min_value=0.5), "min_value=0.5", id="float-seed"),
    pytest.param(lambda: CheckSettings(max_examples=0), "max_examples=0", id="no-examples"),
    pytest.param(lambda: CheckSettings(seed=-1), "seed=-1", id="negative-check-seed"),
    pytest.param(lambda: CheckSettings(rtol=1e-3), "rtol=0.001, atol=None", id="rtol-without-atol"),
    pytest.param(lambda: CheckSettings(rtol=1e-3, atol=-1.0), "atol=-1.0", id="negative-atol"),
    pytest.param(lambda: CheckSettings(rtol=float("nan"), atol=0.0), "rtol=nan", id="nan-rtol"),
    pytest.param(lambda: CheckSettings(size_bounds={"batch": (3, 2)}), "min_batch=3", id="bad-size-bounds"),
    pytest.param(lambda: CheckSettings(size_bounds={"depth": (1, 2)}), "'depth'", id="unknown-size"),
    pytest.param(lambda: CheckSettings(dtypes=("float8",)), "dtype='float8'", id="settings-unknown-dtype"),
    pytest.param(lambda: gst.cases("no-such-assignment"), "assignment='no-such-assignment'", id="unknown-assignment"),
    pytest.param(lambda: check_formulas({"W3": two_layer.grad_W1}), "['W3']", id="unknown-parameter"),
    pytest.param(lambda: gst.seeds(min_value=True), "min_value=True", id="bool-seed"),
    pytest.param(lambda: CheckSettings(seed=True), "seed=True", id="bool-check-seed"),
    pytest.param(
        lambda: CheckSettings(max_examples=True), "max_examples=True", id="bool-examples"
    ),
    pytest.param(
        lambda: gst.seeds(max_value=2**64),
        "max_value=18446744073709551616",
        id="seed-beyond-the-generator",
    ),
]
if not torch.cuda.is_available():
    BAD_CALLS.append(pytest.param(lambda: gst.devices(["cuda"]), "device='cuda'", id="unavailable-cuda"))
    BAD_CALLS.append(pytest.param(lambda: gst.cases(device="cuda"), "device='cuda'", id="case-on-unavailable-cuda"))


@pytest.mark.parametrize(("call", "named"), BAD_CALLS)
def test_a_bad_argument_is_refused_with_its_name_and_value(call: Callable[[], object], named: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        call()
    assert named in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        pytest.param(lambda: gst.dtypes("float32"), "float32", id="dtypes"),
        pytest.param(lambda: gst.devices("cpu"), "cpu", id="devices"),
        pytest.param(
            lambda: CheckSettings(dtypes="float32").case_strategy(two_layer.SIGMOID), "float32", id="settings"
        ),
    ],
)
def test_a_single_name_is_taken_whole_or_refused_by_its_argument_name(call: Callable[[], object], name: str) -> None:
    try:
        strategy = call()
    except InvalidArgument as error:
        assert f"include={name!r}" in str(error) or f"dtypes={name!r}" in str(error)
    else:
        drawn = find(strategy, lambda _: True, settings=settings(database=None, derandomize=True))
        assert name in (drawn, getattr(drawn, "dtype", None))


def test_invalid_argument_is_a_type_error_and_a_value_error() -> None:
    assert issubclass(InvalidArgument, TypeError) and issubclass(InvalidArgument, ValueError)


def test_the_default_bounds_cover_the_issue_s_ranges() -> None:
    assert gst.DEFAULT_SIZE_BOUNDS == {"batch": (1, 64), "n_feature": (1, 8), "n_hidden": (1, 32), "n_output": (1, 4)}


@deterministic(200)
@given(gst.sizes(min_batch=3, max_batch=5, min_n_feature=2, max_n_feature=2, min_n_hidden=7, max_n_hidden=9))
def test_drawn_sizes_respect_their_bounds(sizes: Sizes) -> None:
    assert 3 <= sizes.batch <= 5
    assert sizes.n_feature == 2
    assert 7 <= sizes.n_hidden <= 9
    assert 1 <= sizes.n_output <= 4


@deterministic(200)
@given(gst.cases())
def test_default_cases_respect_the_default_bounds(case: Case) -> None:
    for name, (lo, hi) in gst.DEFAULT_SIZE_BOUNDS.items():
        assert lo <= getattr(case.sizes, name) <= hi
    assert case.dtype in ("float64", "float32")
    assert case.device in gst.available_devices()
    assert 0 <= case.seed < 2**32
    assert case.scale == 1.0


@deterministic(50)
@given(gst.cases(stress=True))
def test_stress_cases_draw_their_scale_from_the_stress_range(case: Case) -> None:
    assert case.scale in gst.STRESS_SCALES


@deterministic(50)
@given(gst.case_tensors(sizes=gst.sizes(max_batch=9, max_n_hidden=5), dtype="float32"))
def test_case_tensors_have_the_case_s_shapes_dtype_and_finite_values(tensors: dict[str, torch.Tensor]) -> None:
    n, f = tensors["X"].shape
    h, o = tensors["W2"].shape
    assert n <= 9 and h <= 5
    assert {k: tuple(t.shape) for k, t in tensors.items()} == {
        "X": (n, f),
        "Y": (n, o),
        "W1": (f, h),
        "b1": (h,),
        "W2": (h, o),
        "b2": (o,),
    }
    assert {t.dtype for t in tensors.values()} == {torch.float32}
    assert all(bool(torch.isfinite(t).all()) for t in tensors.values())


@deterministic(30)
@given(gst.cases(sizes=Sizes(2, 3, 4, 1), dtype=st.just("float32"), device=st.just("cpu"), seed=7,
                 regime=st.just("zeros")))
def test_every_argument_takes_a_value_or_a_strategy(case: Case) -> None:
    assert case == Case(Sizes(2, 3, 4, 1), dtype="float32", seed=7, regime="zeros")


def test_a_case_s_tensors_are_a_pure_function_of_its_fields() -> None:
    case = Case(Sizes(4, 3, 5, 2), dtype="float32", seed=123)
    first, second = two_layer.SIGMOID.tensors(case), two_layer.SIGMOID.tensors(case)
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = two_layer.SIGMOID.tensors(case.replace(seed=124))
    assert not torch.equal(first["X"], other["X"])


def test_a_failing_case_shrinks_to_the_smallest_sizes_float64_and_seed_0() -> None:
    case = find(
        gst.cases(),
        lambda c: c.sizes.batch >= 5 and c.sizes.n_hidden >= 3,
        settings=settings(max_examples=500, derandomize=True, database=None),
    )
    assert case == Case(Sizes(batch=5, n_feature=1, n_hidden=3, n_output=1), "float64", "cpu", seed=0, scale=1.0)


def test_the_case_description_names_every_field() -> None:
    case = Case(Sizes(5, 1, 3, 1), "float32", "cpu", seed=9, scale=10.0)
    assert case.describe() == (
        "batch=5, n_feature=1, n_hidden=3, n_output=1, dtype=float32, device=cpu, seed=9, scale=10"
    )
    assert case.to_json() == {
        "batch": 5,
        "n_feature": 1,
        "n_hidden": 3,
        "n_output": 1,
        "dtype": "float32",
        "device": "cpu",
        "seed": 9,
        "scale": 10.0,
        "regime": "normal",
    }
    assert case.replace(regime="negative").describe().endswith(", seed=9, scale=10, data=negative")


def test_the_cases_of_a_check_draw_data_that_really_differs() -> None:
    # Hypothesis repeats small seeds across a run (seed 0: 29 distinct seeds in 100 cases); a case's sizes are
    # mixed into its generator's seed, so the same seed at other sizes still gives unrelated values.
    import hypothesis

    from gradcheckers.assignment import get_assignment
    from gradcheckers.property import CheckSettings, _hypothesis_settings

    assignment, firsts = get_assignment(None), []

    @_hypothesis_settings(100)
    @hypothesis.seed(0)
    @hypothesis.given(CheckSettings(seed=0).case_strategy(assignment))
    def draw(case: Case) -> None:
        # The data as drawn, before its regime and dtype: what the seed decides.
        plain = case.replace(regime="normal", dtype="float64")
        firsts.append(float(assignment.tensors(plain)["X"].flatten()[0]))

    draw()
    assert len(set(firsts)) >= 75, len(set(firsts))  # 39 before the sizes were mixed in; 83-96 after
