"""Target 1: the full finite-difference gradient of the two-layer loss, every element, with its error estimate.

The problem is the seed's network in float64 with batch 32, 8 features and 4 outputs; the width of the hidden
layer sets the number of parameters P = 13 * n_hidden + 4 to about 1e2, 1e3, 1e4 and 1e5. Methods:

- ``fwd+bwd``: one forward and backward pass by autograd, the unit every other time is divided by;
- ``ours (structure-aware)``: ``models.two_layer.finite_differences``, Richardson-extrapolated central
  differences of every element with an error estimate each, from the cached forward pass;
- ``ours (generic, vmap)``: ``gradcheckers.references.finite_difference_gradients`` on the same loss written
  as a plain function, which gradcheckers knows nothing about (chunks of perturbed copies under vmap);
- ``per-element loop``: the textbook loop, two loss evaluations per element (central differences, no
  Richardson and no error estimate, so it does half our evaluations);
- ``gradcheck slow`` / ``gradcheck fast``: ``torch.autograd.gradcheck`` with ``fast_mode`` False / True.
  Fast mode compares one random projection and so gives no per-element verdict.

A method whose single call is predicted to exceed the time limit is not run at larger sizes; its time there is
the prediction, marked ``~``: for the methods that evaluate the loss once or twice per element (the loop,
gradcheck's slow mode, the generic path), the time at the previous size times the growth of P and of one
forward+backward; for the others, the power law through the two largest sizes measured.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from benchmarks._harness import (
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    heading,
    peak_memory,
    power_law_estimate,
    table,
    time_interleaved,
)

BATCH, N_FEATURE, N_OUTPUT = 32, 8, 4
HIDDEN = {100: 8, 1_000: 80, 10_000: 800, 100_000: 8_000}  # nominal P -> n_hidden
PARAMETERS = ("W1", "b1", "W2", "b2")
METHODS = (
    "fwd+bwd",
    "ours (structure-aware)",
    "ours (generic, vmap)",
    "per-element loop",
    "gradcheck slow",
    "gradcheck fast",
)
UNIT, OURS, GENERIC, LOOP, SLOW, FAST = METHODS


def parameter_count(hidden: int) -> int:
    return N_FEATURE * hidden + hidden + hidden * N_OUTPUT + N_OUTPUT


def case(hidden: int) -> dict[str, Tensor]:
    from gradcheckers.models.two_layer import draw

    from gradcheckers.assignment import Sizes

    return draw(Sizes(BATCH, N_FEATURE, hidden, N_OUTPUT), torch.Generator().manual_seed(0))


def loss(X: Tensor, Y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    return ((Y - (torch.sigmoid(X @ W1 + b1) @ W2 + b2)) ** 2).sum()


def forward_backward(args: dict[str, Tensor]) -> tuple[Tensor, ...]:
    leaves = [args[name].detach().requires_grad_(True) for name in PARAMETERS]
    return torch.autograd.grad(loss(args["X"], args["Y"], *leaves), leaves)


def element_loop(args: dict[str, Tensor], step: float = 1e-5) -> dict[str, Tensor]:
    """Central differences one element at a time: the loop everybody writes first."""
    params = {k: v.clone() for k, v in args.items()}
    out = {}
    with torch.no_grad():
        for name in PARAMETERS:
            flat = params[name].view(-1)
            grad = torch.empty_like(flat)
            for i in range(flat.numel()):
                old = float(flat[i])
                s = step * max(1.0, abs(old))
                flat[i] = old + s
                plus = float(loss(**params))
                flat[i] = old - s
                minus = float(loss(**params))
                flat[i] = old
                grad[i] = (plus - minus) / (2 * s)
            out[name] = grad.view_as(params[name])
    return out


def method(name: str, hidden: int, warm: bool = False) -> Callable[[], object]:
    """The zero-argument callable that runs ``name`` once at this width (also the memory factory)."""
    from gradcheckers.models.two_layer import finite_differences

    from gradcheckers.references import finite_difference_gradients

    args = case(hidden)
    X, Y = args["X"], args["Y"]
    if warm:  # load autograd, vmap and gradcheck's machinery before the memory is measured
        small = case(2)
        forward_backward(small)
        if name == GENERIC:
            finite_difference_gradients(loss, small, PARAMETERS)
        if name in (SLOW, FAST):
            _gradcheck(small, name == FAST)
    if name == UNIT:
        return lambda: forward_backward(args)
    if name == OURS:
        return lambda: finite_differences(X, Y, args)
    if name == GENERIC:
        return lambda: finite_difference_gradients(loss, args, PARAMETERS)
    if name == LOOP:
        return lambda: element_loop(args)
    if name in (SLOW, FAST):
        return lambda: _gradcheck(args, name == FAST)
    raise ValueError(name)


def _gradcheck(args: dict[str, Tensor], fast: bool) -> bool:
    X, Y = args["X"], args["Y"]
    inputs = tuple(args[name].detach().requires_grad_(True) for name in PARAMETERS)
    return torch.autograd.gradcheck(lambda *p: loss(X, Y, *p), inputs, fast_mode=fast)


def accuracy(hidden: int) -> tuple[float, float, float, float]:
    """For ours and the generic path: max |fd - autograd| / max |autograd|, and the share of elements whose
    error is within its own estimate (the estimate is honest where this is 100%)."""
    from gradcheckers.models.two_layer import finite_differences

    from gradcheckers.references import finite_difference_gradients

    args = case(hidden)
    ag = dict(zip(PARAMETERS, forward_backward(args)))
    results = []
    for fd in (
        finite_differences(args["X"], args["Y"], args),
        finite_difference_gradients(loss, args, PARAMETERS) if hidden <= HIDDEN[10_000] else None,
    ):
        if fd is None:
            results += [float("nan"), float("nan")]
            continue
        scale = max(float(ag[k].abs().max()) for k in PARAMETERS)
        worst = max(float((fd[k][0] - ag[k]).abs().max()) for k in PARAMETERS) / scale
        within = sum(int(((fd[k][0] - ag[k]).abs() <= fd[k][1]).sum()) for k in PARAMETERS)
        total = sum(ag[k].numel() for k in PARAMETERS)
        results += [worst, within / total]
    return results[0], results[1], results[2], results[3]


@dataclass
class Cell:
    seconds: float | None = None
    best: float | None = None
    estimated: bool = False
    memory: int | None = None
    note: str = ""


@dataclass
class Results:
    sizes: list[int]
    cells: dict[tuple[str, int], Cell] = field(default_factory=dict)


def run(*, quick: bool = False, threads: int | None = None, targets: bool = False) -> Results:
    """With ``targets``, only what the summary table needs: one fwd+bwd and ours, no peak memory, no accuracy."""
    sizes = [100, 1_000, 10_000] if quick else list(HIDDEN)
    limit = 10.0 if quick else 60.0  # seconds one call may take before a method is left out
    budget = 0.3 if quick else 1.5
    heading("Target 1: full finite-difference gradient of the two-layer loss (float64, N=32, f=8, o=4)")
    print(f"Methods: {', '.join(METHODS)}. A call predicted above {limit:.0f} s is not run (~: extrapolated).")
    results = Results(sizes)
    measured: dict[str, list[tuple[int, float]]] = {m: [] for m in METHODS}
    units: list[float] = []
    for P in sizes:
        hidden = HIDDEN[P]
        # The per-element methods make O(P) loss evaluations, each as dear as a forward pass at this size:
        # predict them from the previous size by P and by the forward+backward time, measured here first.
        units.append(time_interleaved({UNIT: method(UNIT, hidden)}, budget_s=0.2).pop(UNIT).median)
        runnable = {}
        for m in METHODS:
            history = measured[m]
            if quick and P > 1_000 and m in (GENERIC, LOOP, SLOW):
                results.cells[(m, P)] = Cell(None, note="not run in --quick")
                continue
            if targets and m not in (UNIT, OURS):
                results.cells[(m, P)] = Cell(None, note="not run for the targets alone")
                continue
            if history and m in (GENERIC, LOOP, SLOW):
                (p0, t0), unit0 = history[-1], units[len(history) - 1]
                guess = t0 * parameter_count(hidden) / p0 * units[-1] / unit0
            elif len(history) >= 2:
                guess = power_law_estimate([p for p, _ in history], [t for _, t in history], parameter_count(hidden))
            else:
                guess = 0.0
            if guess > limit:
                results.cells[(m, P)] = Cell(guess, None, True, note=f"not run: predicted {fmt_seconds(guess)}")
            else:
                runnable[m] = method(m, hidden)
        timings = time_interleaved(runnable, budget_s=budget, min_repeats=3 if quick else 7)
        for m, t in timings.items():
            measured[m].append((parameter_count(hidden), t.median))
            results.cells[(m, P)] = Cell(t.median, t.best)
        done = ", ".join(f"{m} {fmt_seconds(t.median)}" for m, t in timings.items())
        print(f"  P={parameter_count(hidden):,}: {done}", flush=True)
    memory_methods = [] if targets else [UNIT, OURS] if quick else list(METHODS)
    for (m, P), cell in results.cells.items():
        if m in memory_methods and not cell.estimated and cell.seconds is not None:
            cell.memory = peak_memory("benchmarks.finite_differences:_memory_factory", m, HIDDEN[P], threads=threads)
    report(results, accuracy_too=not targets)
    return results


def _memory_factory(name: str, hidden: int) -> Callable[[], object]:
    return method(name, hidden, warm=True)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def report(results: Results, accuracy_too: bool = True) -> None:
    cells = results.cells
    rows = []
    for P in results.sizes:
        unit = cells[(UNIT, P)].seconds
        slow, fast = cells[(SLOW, P)], cells[(FAST, P)]
        for m in METHODS:
            c = cells[(m, P)]
            rows.append([
                f"{parameter_count(HIDDEN[P]):,}",
                m,
                ("~" if c.estimated else "") + fmt_seconds(c.seconds) if c.seconds is not None else c.note,
                fmt_seconds(c.best),
                fmt_ratio(_ratio(c.seconds, unit), c.estimated),
                fmt_bytes(c.memory),
                fmt_ratio(_ratio(slow.seconds, c.seconds), c.estimated or slow.estimated),
                fmt_ratio(_ratio(fast.seconds, c.seconds), c.estimated or fast.estimated),
            ])
    print()
    print(table(["P", "method", "median", "best", "× fwd+bwd", "peak memory", "gradcheck slow ÷ this",
                 "gradcheck fast ÷ this"], rows, "rlrrrrrr"))
    print()
    summary = []
    for m in METHODS:
        row = [m]
        for P in results.sizes:
            c = cells[(m, P)]
            unit = cells[(UNIT, P)].seconds
            row.append(fmt_seconds(c.seconds) if m == UNIT else fmt_ratio(_ratio(c.seconds, unit), c.estimated))
        summary.append(row)
    print(table(["method (median, × one fwd+bwd)", *(f"P={parameter_count(HIDDEN[P]):,}" for P in results.sizes)],
                summary))
    print()
    acc_rows = []
    for P in results.sizes if accuracy_too else []:
        worst, honest, gworst, ghonest = accuracy(HIDDEN[P])
        acc_rows.append([f"{parameter_count(HIDDEN[P]):,}", f"{worst:.1e}", f"{100 * honest:.1f}%",
                         "—" if gworst != gworst else f"{gworst:.1e}",
                         "—" if ghonest != ghonest else f"{100 * ghonest:.1f}%"])
    print(table(["P", "ours: max|fd−autograd| / max|g|", "ours: within own estimate",
                 "generic: max|fd−autograd| / max|g|", "generic: within own estimate"], acc_rows))
    print()
    verdicts = []
    for P in results.sizes:
        ratio = _ratio(cells[(OURS, P)].seconds, cells[(UNIT, P)].seconds) or float("nan")
        bound = 8 if P <= 10_000 else 15
        verdicts.append(f"P={parameter_count(HIDDEN[P]):,}: {ratio:.1f}× (target ≤ {bound}×: "
                        f"{'met' if ratio <= bound else 'NOT met'})")
    print("Target 1, structure-aware finite differences ÷ one fwd+bwd: " + "; ".join(verdicts) + ".")
    if 10_000 in results.sizes:
        slow, ours = cells[(SLOW, 10_000)], cells[(OURS, 10_000)]
        speedup = _ratio(slow.seconds, ours.seconds)
        if speedup is None:
            print("Target 1, gradcheck slow ÷ ours at P=10,404: not measured in this run.")
        else:
            print(f"Target 1, gradcheck slow ÷ ours at P=10,404: {speedup:,.0f}× "
                  f"({'estimated, ' if slow.estimated else ''}target ≥ 1,000×: "
                  f"{'met' if speedup >= 1000 else 'NOT met'}).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    run(quick=options.quick)


if __name__ == "__main__":
    main()
