"""The seed's regression, trained with analytic gradients and with autograd: equal runs, a PNG, and the seed's
own formulas stopping the analytic run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from gradcheckers.models import regression
from gradcheckers.models.two_layer import gradients

pytest.importorskip("matplotlib")
ROOT = Path(__file__).resolve().parents[1]
SUBMISSIONS = Path(__file__).with_name("submissions")


def test_the_data_is_the_seeds() -> None:
    x, y = regression.data()
    assert x.shape == y.shape == (100, 1) and x.dtype == torch.float32
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert bool(((y - x**2) >= 0).all()) and bool(((y - x**2) <= 0.2).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_analytic_descent_and_autograd_sgd_agree_step_by_step(dtype: torch.dtype) -> None:
    result = regression.train(steps=300, dtype=dtype)
    assert result.analytic.failure is None
    assert len(result.deviations) == 300 == result.analytic.steps == result.autograd.steps
    assert result.agree, result.summary()
    assert result.max_deviation <= result.tolerance
    assert result.analytic.losses[-1] < result.analytic.losses[0] / 5  # it does train
    for name, value in result.analytic.parameters.items():
        assert value.dtype == dtype
        assert torch.allclose(value, result.autograd.parameters[name], rtol=0, atol=result.tolerance * 10)


def test_wrong_formulas_of_the_right_shape_part_ways_with_autograd() -> None:
    def b1_mean(x, y, theta):  # the loss sums over the batch; a mean moves b1 100 times too slowly
        grads = gradients(x, y, **theta)
        return {**grads, "b1": grads["b1"] / x.shape[0]}

    result = regression.train(b1_mean, steps=50)
    assert result.analytic.failure is None
    assert not result.agree and result.max_deviation > 100 * result.tolerance
    assert "DISAGREE" in result.summary()


def test_a_gradient_of_the_wrong_shape_stops_the_analytic_run_with_the_reason() -> None:
    def per_sample_b2(x, y, theta):
        grads = gradients(x, y, **theta)
        return {**grads, "b2": grads["b2"][None].expand(x.shape[0], 1)}

    result = regression.train(per_sample_b2, steps=5)
    assert result.analytic.steps == 0 and result.autograd.steps == 5
    assert result.analytic.failure == (
        "step 0: the gradient of b2 has shape (100, 1), b2 (1,) (gradient descent cannot apply a gradient of "
        "another shape)"
    )
    assert not result.agree


def test_the_module_runs_end_to_end_and_saves_the_png(tmp_path: Path) -> None:
    out = tmp_path / "plots" / "regression.png"
    done = subprocess.run([sys.executable, "-m", "gradcheckers.models.regression", "--steps", "40", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "the two runs agree step by step" in done.stdout
    assert f"saved {out}" in done.stdout


def test_a_correct_submission_trains_in_the_sandbox(tmp_path: Path) -> None:
    out = tmp_path / "correct.png"
    code = regression.main(["--submission", str(SUBMISSIONS / "correct.py"), "--steps", "15", "--out", str(out)])
    assert code == 0 and out.is_file()


def test_the_seeds_formulas_cannot_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "seed.png"
    code = regression.main(["--submission", "seed", "--steps", "10", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 1 and out.is_file()
    assert ("stopped: step 0: the gradient of W1 has shape (100, 20), W1 (1, 20); the gradient of b1 has shape "
            "(100, 20), b1 (20,); the gradient of b2 has shape (1, 100), b2 (1,)") in printed
    assert "the two runs DISAGREE" in printed


def test_an_unloadable_submission_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = regression.main(["--submission", str(tmp_path / "missing.py"), "--out", str(tmp_path / "x.png")])
    assert code == 2
    assert "cannot load" in capsys.readouterr().err
