"""The regression the seed's network was built for, trained twice: with the analytic gradients and with autograd.

The homework fits y = x^2 + 0.2 U(0, 1) on 100 points of [-1, 1] (``torch.manual_seed(1)``, as in the seed)
with the two-layer network (n_hidden = 20, sigmoid) and f = ||Y - Y_pred||_F^2. Here it is trained twice from
the same initial parameters:

- **analytic**: plain gradient descent, theta <- theta - lr * grad_theta, with the formulas of
  ``models.two_layer`` or of a student's submission (``--submission``), which runs in gradcheckers' sandbox
  (an isolated worker process, as ``gradcheckers check`` runs it);
- **autograd**: the course's ``TwoLayerNet``, ``loss.backward()`` and ``torch.optim.SGD`` with the same lr.

After every step the two runs' parameters are compared; correct formulas keep them equal up to rounding
(``agreement_tolerance``), wrong ones part ways or stop the run (a gradient of the wrong shape, an exception,
non-finite values). The PNG shows the data, both fits and both loss curves.

    python -m gradcheckers.models.regression [--submission PATH] [--steps N] [--lr LR] [--dtype float32] [--out PNG]

Exit status: 0 the runs agree at every step, 1 they do not (or the analytic run failed), 2 bad options or a
submission that cannot be loaded.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from gradcheckers.models.two_layer import PARAMETERS, TwoLayerNet, gradients, math_from_module
from torch import Tensor

__all__ = [
    "GradientFn",
    "RegressionResult",
    "Run",
    "agreement_tolerance",
    "data",
    "main",
    "plot",
    "submission_gradients",
    "train",
]

DEFAULT_STEPS = 3000
# The loss sums over 100 points, so its gradient is 100 times a mean loss's: lr = 0.001 here is lr = 0.1 for
# MSELoss(reduction="mean"). The loss then falls monotonically (twice that overshoots to ~1e4 in the first
# steps) to 0.38 in 3000 steps, near the noise floor 100 * Var(0.2 U(0, 1)) = 0.33.
DEFAULT_LR = 0.001
N_HIDDEN = 20
# A run whose loss grows past this factor of its initial value has diverged.
DIVERGENCE_FACTOR = 1e6

GradientFn = Callable[[Tensor, Tensor, dict[str, Tensor]], Mapping[str, object]]


def data(dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """The seed's data: 100 points of [-1, 1] and y = x^2 + 0.2 U(0, 1), after ``torch.manual_seed(1)`` (on a
    forked generator: the caller's random state is left alone)."""
    with torch.random.fork_rng(devices=[]):
        return _seeded_data(dtype)


def _seeded_data(dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    torch.manual_seed(1)
    x = torch.unsqueeze(torch.linspace(-1, 1, 100), dim=1)
    y = x.pow(2) + 0.2 * torch.rand(x.size())
    return x.to(dtype), y.to(dtype)


def agreement_tolerance(dtype: torch.dtype, steps: int) -> float:
    """How far apart (relative to max(1, |theta|)) the two runs' parameters may drift in ``steps`` steps.

    Each step's two gradients are two correct computations of the same number, a few ulps apart (say 16,
    for sums over 100 samples); gradient descent here is contracting, so the differences of the steps add up
    like a random walk, sqrt(steps) of them.
    """
    return 16 * torch.finfo(dtype).eps * math.sqrt(max(1, steps))


@dataclass
class Run:
    """One training run: the loss before each step, the parameters reached, and why it stopped early."""

    label: str
    losses: list[float] = field(default_factory=list)
    parameters: dict[str, Tensor] = field(default_factory=dict)
    failure: str | None = None

    @property
    def steps(self) -> int:
        return len(self.losses)


@dataclass
class RegressionResult:
    analytic: Run
    autograd: Run
    deviations: list[float]  # after each step both runs made: max relative parameter difference
    tolerance: float
    dtype: torch.dtype
    lr: float

    @property
    def max_deviation(self) -> float:
        return max(self.deviations, default=0.0)

    @property
    def agree(self) -> bool:
        return self.analytic.failure is None and self.max_deviation <= self.tolerance

    def summary(self) -> str:
        lines = [
            f"analytic gradient descent: {self.analytic.steps} steps, final loss "
            f"{_last(self.analytic.losses)}" + (f"; stopped: {self.analytic.failure}" if self.analytic.failure else ""),
            f"autograd + torch.optim.SGD: {self.autograd.steps} steps, final loss {_last(self.autograd.losses)}",
            f"max parameter deviation over {len(self.deviations)} steps: {self.max_deviation:.3g} "
            f"(relative to max(1, |theta|); tolerance {self.tolerance:.3g} in {str(self.dtype).replace('torch.', '')})",
            "the two runs agree step by step" if self.agree else "the two runs DISAGREE",
        ]
        return "\n".join(lines)


def _last(values: Sequence[float]) -> str:
    return f"{values[-1]:.6g}" if values else "n/a"


def _loss(x: Tensor, y: Tensor, theta: dict[str, Tensor]) -> Tensor:
    prediction = torch.sigmoid(x @ theta["W1"] + theta["b1"]) @ theta["W2"] + theta["b2"]
    return ((y - prediction) ** 2).sum()


def _analytic(x: Tensor, y: Tensor, theta: dict[str, Tensor]) -> Mapping[str, object]:
    return gradients(x, y, theta["W1"], theta["b1"], theta["W2"], theta["b2"])


def train(
    gradient_fn: GradientFn | None = None,
    *,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    dtype: torch.dtype = torch.float32,
    label: str = "analytic (models.two_layer)",
) -> RegressionResult:
    """Train both runs from the same initial network and compare them after every step.

    ``gradient_fn(x, y, theta)`` returns the gradients of f by parameter name (default: the correct
    formulas of ``models.two_layer``); anything else than a tensor of the parameter's shape stops the
    analytic run with a message, as do non-finite values and a diverging loss. The autograd run always
    completes.
    """
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps={steps!r} must be a positive integer")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr={lr!r} must be a positive number")
    with torch.random.fork_rng(devices=[]):
        x, y = _seeded_data(dtype)
        net = TwoLayerNet(1, N_HIDDEN, 1).to(dtype)  # initialized from the RNG state the data left, as in the seed
    theta = {name: t.detach().clone() for name, t in math_from_module(net).items()}
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    analytic = Run(label)
    reference = Run("autograd + torch.optim.SGD")
    deviations: list[float] = []
    gradient_fn = gradient_fn or _analytic

    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y, reduction="sum")
        loss.backward()
        optimizer.step()
        reference.losses.append(loss.item())
        if analytic.failure is None:
            analytic.failure = _step(gradient_fn, x, y, theta, lr, analytic)
            if analytic.failure is None:
                deviations.append(_deviation(theta, math_from_module(net)))
    analytic.parameters = theta
    reference.parameters = {name: t.detach().clone() for name, t in math_from_module(net).items()}
    return RegressionResult(analytic, reference, deviations, agreement_tolerance(dtype, steps), dtype, lr)


def _step(gradient_fn: GradientFn, x: Tensor, y: Tensor, theta: dict[str, Tensor], lr: float, run: Run) -> str | None:
    """One gradient-descent step of the analytic run, in place; a message when the run must stop."""
    with torch.no_grad():
        value = _loss(x, y, theta).item()
    step = len(run.losses)
    if not math.isfinite(value) or (run.losses and value > DIVERGENCE_FACTOR * max(run.losses[0], 1e-30)):
        return f"diverged at step {step}: the loss reached {value:.3g} (it started at {run.losses[0]:.3g})"
    try:
        grads = gradient_fn(x, y, theta)
    except Exception as error:  # the submission's own failure, reported, never a crash of the demo
        return f"step {step}: {type(error).__name__}: {error}"
    updates, problems = {}, []
    for name in PARAMETERS:
        g = grads.get(name) if isinstance(grads, Mapping) else None
        if not isinstance(g, Tensor):
            problems.append(f"the gradient of {name} is {type(g).__name__}, not a tensor")
        elif tuple(g.shape) != tuple(theta[name].shape):
            problems.append(f"the gradient of {name} has shape {tuple(g.shape)}, {name} {tuple(theta[name].shape)}")
        elif not bool(torch.isfinite(g).all()):
            problems.append(f"the gradient of {name} has non-finite values")
        else:
            updates[name] = g.to(theta[name].dtype)
    if problems:
        return f"step {step}: " + "; ".join(problems) + " (gradient descent cannot apply a gradient of another shape)"
    for name, g in updates.items():
        theta[name] = theta[name] - lr * g
    run.losses.append(value)  # the loss before this step, recorded once the step was taken
    return None


def _deviation(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    return max(
        float((a[n] - b[n].detach()).abs().max()) / max(1.0, float(b[n].detach().abs().max())) for n in PARAMETERS
    )


def submission_gradients(worker: object) -> GradientFn:
    """Gradients from a student's ``grad_W1``... (or ``gradients``) running in a started sandbox ``Worker``."""
    from gradcheckers.sandbox import Worker

    assert isinstance(worker, Worker)
    names: dict[str, tuple[str, str | None]] = {}
    for name in PARAMETERS:
        if f"grad_{name}" in worker.defined:
            names[name] = (f"grad_{name}", None)
        elif "gradients" in worker.defined:
            names[name] = ("gradients", name)
    missing = [n for n in PARAMETERS if n not in names]
    if missing:
        raise ValueError(f"the submission defines no grad_{missing[0]}(X, Y, W1, b1, W2, b2) and no gradients(...)")

    def call(x: Tensor, y: Tensor, theta: dict[str, Tensor]) -> Mapping[str, object]:
        arrays = [t.detach().cpu().numpy() for t in (x, y, *(theta[n] for n in PARAMETERS))]
        return {n: torch.from_numpy(worker.call(f, arrays, key=k)) for n, (f, k) in names.items()}

    return call


def plot(result: RegressionResult, path: str | Path) -> Path:
    """Save the data, both fits and both loss curves as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = data(torch.float64)
    grid = torch.linspace(-1, 1, 200, dtype=torch.float64)[:, None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    left.scatter(x[:, 0], y[:, 0], s=10, color="0.55", label="data: x² + 0.2·U(0, 1)")
    for run, style in ((result.autograd, dict(color="tab:blue", lw=3, alpha=0.6)),
                       (result.analytic, dict(color="tab:orange", lw=1.5, ls="--"))):
        if run.parameters:
            theta = {k: v.detach().double() for k, v in run.parameters.items()}
            with torch.no_grad():
                fit = torch.sigmoid(grid @ theta["W1"] + theta["b1"]) @ theta["W2"] + theta["b2"]
            if torch.isfinite(fit).all() and fit.shape == grid.shape:
                stopped = f", stopped at step {run.steps}" if run.failure else f", {run.steps} steps"
                left.plot(grid[:, 0], fit[:, 0], label=run.label + stopped, **style)
    left.set(xlabel="x", ylabel="y", title="the fits after training")
    left.legend(fontsize=8, loc="upper center")
    right.semilogy(result.autograd.losses, color="tab:blue", lw=3, alpha=0.6, label=result.autograd.label)
    if result.analytic.losses:
        right.semilogy(result.analytic.losses, color="tab:orange", lw=1.5, ls="--", label=result.analytic.label)
    right.set(xlabel="step", ylabel="f = ||Y − Y_pred||²_F", title="loss curves")
    right.legend(fontsize=8)
    verdict = (f"runs agree: max parameter deviation {result.max_deviation:.2g} (tolerance {result.tolerance:.2g})"
               if result.agree else
               f"runs disagree: {result.analytic.failure or f'max deviation {result.max_deviation:.2g}'}")
    fig.suptitle(f"y = x² + 0.2·U(0,1), two-layer sigmoid net (20 hidden), lr={result.lr:g}\n{verdict}", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gradcheckers.models.regression",
        description="Train the seed's regression with analytic gradients and with autograd; compare; plot.",
    )
    parser.add_argument("--submission", help="a student's .py/.ipynb (or a bundled example: correct, seed); "
                        "its grad_* functions run in gradcheckers' sandbox (default: models.two_layer)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"gradient steps (default {DEFAULT_STEPS})")
    parser.add_argument("--lr", type=float, default=DEFAULT_LR, help=f"learning rate (default {DEFAULT_LR})")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="dtype of data and parameters (default float32, as in the seed)")
    parser.add_argument("--out", default="regression.png", help="where to save the PNG (default regression.png)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    dtype = getattr(torch, args.dtype)
    result: RegressionResult | None
    try:
        if args.submission is None:
            result = train(steps=args.steps, lr=args.lr, dtype=dtype)
        else:
            result = _train_submission(args.submission, args.steps, args.lr, dtype)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if result is None:
        return 2
    path = plot(result, args.out)
    print(result.summary())
    print(f"saved {path}")
    return 0 if result.agree else 1


def _train_submission(spec: str, steps: int, lr: float, dtype: torch.dtype) -> RegressionResult | None:
    from gradcheckers.errors import LoadError
    from gradcheckers.sandbox import Limits, Worker
    from gradcheckers.submission import load_source, resolve_submission

    try:
        source = load_source(resolve_submission(spec))
    except LoadError as error:
        print(f"cannot load {spec}: {error}", file=sys.stderr)
        return None
    worker = Worker(source, Limits())
    try:
        worker.start()
        return train(submission_gradients(worker), steps=steps, lr=lr, dtype=dtype, label=f"analytic ({spec})")
    except LoadError as error:
        print(f"cannot load {spec}: {error}", file=sys.stderr)
        return None
    finally:
        worker.close()


if __name__ == "__main__":
    sys.exit(main())
