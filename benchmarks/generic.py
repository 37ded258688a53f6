"""Target 3: a loss gradcheckers knows nothing about, checked by ``assert_gradients_agree``.

The loss is a small MLP written as a closure over its data, ``mean((tanh(x @ W + b) @ V + c - y)^2)`` with
batch 32 and 8 inputs (P = 10 * hidden + 1 parameters), in float64.

Speed: ``gradcheckers.references.finite_difference_gradients`` (perturbed copies in chunks, one vmapped call
per chunk) against a per-element loop that computes the same thing (the same four evaluations per element,
+-s and +-2s, so the same estimate and error estimate), and against the textbook loop with two evaluations
per element. Peak memory of each in a fresh process. The floor is the 4P loss evaluations alone, in the same
chunks of perturbed copies, one vmapped call each, nothing else: what any method computing these estimates
must spend. This loss spends most of an evaluation in tanh of a (32, hidden) float64 tensor, which batching
does not make cheaper, so the floor is close to the loop once the loop's per-call overhead is small next to
that (P = 1e4): the loop and the floor do the same evaluations, and only the loop's overhead per call can be
saved. ``gradcheck``'s slow mode evaluates the loss 2P times (central differences without an error estimate).

Detection power: beyond ``max_full_elements`` parameter elements, ``assert_gradients_agree`` checks each
tensor along ``directions`` random directions of its own. Here one element of one tensor of a wider MLP
(16 inputs, 1,000 hidden units: W has 16,000 elements, V 1,000) is made 100% wrong (doubled), and the
fraction of trials in which the check fails is counted, per tensor (``assert_gradients_agree`` itself, end
to end) and, for comparison, along directions over the whole parameter vector (the same references,
projections and tolerance, one set of directions for all tensors; the first k of 32 directions). "full
check" is what the element-by-element comparison with the same tolerance catches, the ceiling for any
projection. The analytic gradient is autograd's in the parameters' dtype (a correct computation in that
dtype) with the one element doubled.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from benchmarks._harness import fmt_bytes, fmt_ratio, fmt_seconds, heading, peak_memory, table, time_interleaved

BATCH, INPUTS = 32, 8
HIDDEN = {100: 10, 1_000: 100, 10_000: 1_000}  # nominal P -> hidden units
STEPS = (1.0, -1.0, 2.0, -2.0)


def mlp(hidden: int, inputs: int = INPUTS, dtype: torch.dtype = torch.float64, seed: int = 0
        ) -> tuple[Callable[..., Tensor], dict[str, Tensor]]:
    """The loss (a closure over its data) and its parameters W, b, V, c."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, inputs, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randn(BATCH, 1, generator=g, dtype=torch.float64).to(dtype)
    params = {
        "W": torch.randn(inputs, hidden, generator=g, dtype=torch.float64) / math.sqrt(inputs),
        "b": torch.randn(hidden, generator=g, dtype=torch.float64) * 0.1,
        "V": torch.randn(hidden, 1, generator=g, dtype=torch.float64) / math.sqrt(hidden),
        "c": torch.zeros(1, dtype=torch.float64),
    }

    def loss(W: Tensor, b: Tensor, V: Tensor, c: Tensor) -> Tensor:
        return ((torch.tanh(x @ W + b) @ V + c - y) ** 2).mean()

    return loss, {k: v.to(dtype) for k, v in params.items()}


def element_loop(loss: Callable[..., Tensor], params: dict[str, Tensor], evaluations: int = 4,
                 step: float = 1e-5, sample: int | None = None) -> dict[str, tuple[Tensor, Tensor]]:
    """One element at a time: with 4 evaluations the same Richardson estimate and error estimate as
    finite_difference_gradients, with 2 the textbook central difference (no error estimate). With ``sample``,
    only that many elements, spread evenly over the parameter vector (the others stay NaN): every element
    costs the same evaluations of the same loss, so the loop's time over all P elements is the sample's time
    times P / sample."""
    p = {k: v.detach().clone() for k, v in params.items()}
    total = sum(v.numel() for v in p.values())
    chosen = None if sample is None else set(torch.linspace(0, total - 1, min(sample, total)).long().tolist())
    out = {}
    offset = 0
    with torch.no_grad():
        base = abs(float(loss(**p)))
        for name, tensor in p.items():
            flat = tensor.view(-1)
            grad, err = torch.full_like(flat, float("nan")), torch.full_like(flat, float("nan"))
            for i in range(flat.numel()):
                if chosen is not None and offset + i not in chosen:
                    continue
                old = float(flat[i])
                s = step * max(1.0, abs(old))
                values = []
                for m in STEPS[:evaluations]:
                    flat[i] = old + m * s
                    values.append(float(loss(**p)))
                flat[i] = old
                d1 = (values[0] - values[1]) / (2 * s)
                if evaluations == 4:
                    d2 = (values[2] - values[3]) / (4 * s)
                    grad[i], err[i] = (4 * d1 - d2) / 3, abs(d1 - d2) / 3 + 16 * 1.1e-16 * base / s
                else:
                    grad[i], err[i] = d1, float("nan")
            offset += flat.numel()
            out[name] = (grad.view_as(tensor), err.view_as(tensor))
    return out


# Elements the per-element loops visit at P = 1e4, where all of them would take minutes (see element_loop).
LOOP_SAMPLE = 1_000


METHODS = ("fwd+bwd", "vmap chunks (ours)", "per-element loop, 4 evaluations", "per-element loop, 2 evaluations",
           "assert_gradients_agree", "gradcheck slow", "floor: the 4P evaluations alone")
LOOP4, LOOP2, FLOOR = METHODS[2], METHODS[3], METHODS[6]


def evaluations_only(loss: Callable[..., Tensor], params: dict[str, Tensor]) -> Callable[[], object]:
    """The floor: the losses at the 4P perturbed copies, in the chunks finite_difference_gradients uses, one
    vmapped call per chunk, without the estimates, checks or anything else."""
    from gradcheckers.references import _base, _perturbed, _steps

    base = _base(loss, params)
    chunk = max(1, base.copies // len(STEPS))

    def run() -> None:
        with torch.no_grad():
            for name, theta in params.items():
                flat, numel = theta.reshape(-1), theta.numel()
                s = _steps(flat, 1e-5)
                buffer = torch.empty(len(STEPS) * min(chunk, numel), numel, dtype=torch.float64)
                batched = torch.func.vmap(lambda p, name=name: loss(**{**params, name: p}))
                for lo in range(0, numel, chunk):
                    idx = torch.arange(lo, min(numel, lo + chunk))
                    batched(_perturbed(flat, s, idx, buffer).reshape(-1, *theta.shape))

    return run


def method(name: str, hidden: int, warm: bool = False) -> Callable[[], object]:
    from gradcheckers import assert_gradients_agree, autograd_gradients
    from gradcheckers.references import finite_difference_gradients

    loss, params = mlp(hidden)
    names = list(params)
    if warm:  # load autograd and vmap before memory is measured
        small_loss, small = mlp(2)
        finite_difference_gradients(small_loss, small, list(small))
    if name == "fwd+bwd":
        return lambda: autograd_gradients(loss, params, names)
    if name == "vmap chunks (ours)":
        return lambda: finite_difference_gradients(loss, params, names)
    if name == FLOOR:
        return evaluations_only(loss, params)
    sample = LOOP_SAMPLE if hidden > 100 else None  # see _loop_scale
    if name == LOOP4:
        return lambda: element_loop(loss, params, 4, sample=sample)
    if name == LOOP2:
        return lambda: element_loop(loss, params, 2, sample=sample)
    if name == "gradcheck slow":
        inputs = tuple(v.detach().clone().requires_grad_(True) for v in params.values())
        return lambda: torch.autograd.gradcheck(lambda *p: loss(*p), inputs, fast_mode=False)
    if name == "assert_gradients_agree":
        analytic = autograd_gradients(loss, params, names)
        return lambda: assert_gradients_agree(loss, params, analytic, max_full_elements=1 << 30)
    raise ValueError(name)


def _memory_factory(name: str, hidden: int) -> Callable[[], object]:
    return method(name, hidden, warm=True)


def _loop_scale(hidden: int) -> float:
    """What the sampled loop's time is multiplied by to give the loop over every element (1: not sampled)."""
    P = 10 * hidden + 1
    return 1.0 if hidden <= 100 else P / min(LOOP_SAMPLE, P)


def speed(*, quick: bool, threads: int | None = None, targets: bool = False) -> dict[int, dict[str, float]]:
    """Medians per nominal P and method; the loops' figures at P > 1e3 are the sampled loop's, scaled. With
    ``targets``, only what the summary table needs: P = 1e3 and 1e4, gradcheck only at 1e4, no peak memory."""
    sizes = [100, 1_000] if quick else [1_000, 10_000] if targets else [100, 1_000, 10_000]
    rows, out = [], {}
    for P in sizes:
        hidden = HIDDEN[P]
        # gradcheck's slow mode evaluates the loss 2P times in a Python loop: at 1e4 a minute or more, so not in
        # --quick; for the targets alone only at 1e4, the one size the table compares it at.
        names = [m for m in METHODS if m != "gradcheck slow" or not (quick or (targets and P < 10_000))]
        timings = time_interleaved({m: method(m, hidden) for m in names}, budget_s=0.3 if quick else 1.0,
                                   min_repeats=3 if quick else 5)
        scale = {m: _loop_scale(hidden) if "loop" in m else 1.0 for m in names}
        out[P] = {m: t.median * scale[m] for m, t in timings.items()}
        ours = out[P]["vmap chunks (ours)"]
        unit = out[P]["fwd+bwd"]
        for m in names:
            memory = None
            if not targets and not quick and m not in ("fwd+bwd", "gradcheck slow", FLOOR) and scale[m] == 1.0:
                memory = peak_memory("benchmarks.generic:_memory_factory", m, hidden, threads=threads)
            mark = scale[m] != 1.0
            label = f"{m} (~: {LOOP_SAMPLE:,} elements × {scale[m]:.1f})" if mark else m
            rows.append([f"{10 * hidden + 1:,}", label, ("~" if mark else "") + fmt_seconds(out[P][m]),
                         fmt_ratio(out[P][m] / unit, mark), fmt_ratio(out[P][m] / ours, mark), fmt_bytes(memory)])
        print(f"  P={10 * hidden + 1:,} done", flush=True)
    print()
    print(table(["P", "method", "median", "× fwd+bwd", "÷ vmap chunks (×: ours is faster)", "peak memory"],
                rows, "rlrrrr"))
    print()
    for P in sizes:
        ratio = out[P]["assert_gradients_agree"] / out[P][LOOP4]
        print(f"At P={10 * HIDDEN[P] + 1:,}: assert_gradients_agree takes {ratio:.2f}× the per-element loop computing "
              f"the same estimates; {out[P]['assert_gradients_agree'] / out[P][LOOP2]:.2f}× the 2-evaluation loop"
              + (f"; {out[P]['assert_gradients_agree'] / out[P]['gradcheck slow']:.3f}× gradcheck slow"
                 if "gradcheck slow" in out[P] else "")
              + f". The floor (the same 4P evaluations alone) is {out[P][FLOOR] / out[P][LOOP4]:.2f}× the loop; "
              f"assert_gradients_agree is {out[P]['assert_gradients_agree'] / out[P][FLOOR]:.2f}× the floor.")
    return out


# --------------------------------------------------------------------------------------------------------
# Detection power of random directions


def _whole_vector(loss: Callable[..., Tensor], params: dict[str, Tensor], analytic: dict[str, Tensor],
                  ag: dict[str, Tensor], noise: dict[str, Tensor | None], ks: tuple[int, ...], seed: int
                  ) -> dict[int, bool]:
    """Directions over the whole parameter vector, judged as assert_gradients_agree judges one tensor's:
    for each k, whether the first k of max(ks) directions fail the check."""
    from gradcheckers.compare import judge
    from gradcheckers.references import directional_derivatives
    from gradcheckers.tolerance import generic_rounding

    names = list(params)
    top = max(ks)
    generator = torch.Generator().manual_seed(seed)
    dirs = {n: torch.randn(top, *params[n].shape, generator=generator, dtype=torch.float64) for n in names}
    args64 = {n: v.detach().double() for n, v in params.items()}
    dd = directional_derivatives(loss, args64, names, dirs)  # the joint derivative is the sum over tensors
    fd, fd_error = sum(dd[n][0] for n in names), sum(dd[n][1] for n in names)
    dtype = params[names[0]].dtype
    # One rounding magnitude for the whole vector, as generic_rounding gives one for a tensor.
    everything = torch.cat([ag[n].reshape(-1) for n in names])
    noise_all = None if noise[names[0]] is None else torch.cat([noise[n].reshape(-1) for n in names])  # type: ignore[union-attr]
    rounding = generic_rounding(everything, noise_all, dtype)
    d = torch.cat([dirs[n].reshape(top, -1) for n in names], 1)
    got = d @ torch.cat([analytic[n].reshape(-1).double() for n in names])
    ref = d @ everything
    projected = d.abs() @ rounding
    return {k: judge("all", got[:k], (k,), ref[:k], fd[:k], fd_error[:k], projected[:k], dtype).status == "fail"  # type: ignore[index]
            for k in ks}


def detection(*, quick: bool, trials: int | None = None) -> None:
    from gradcheckers import GradientMismatchError, assert_gradients_agree, autograd_gradients
    from gradcheckers.compare import InconclusiveWarning, judge
    from gradcheckers.tolerance import generic_rounding

    trials = trials or (25 if quick else 200)
    ks = (4, 16, 32)
    rows = []
    started = time.perf_counter()
    for dtype in (torch.float64, torch.float32):
        loss, params = mlp(1_000, inputs=16, dtype=dtype)
        names = list(params)
        ag = autograd_gradients(loss, params, names)  # float64 references
        native = autograd_gradients(loss, params, names, promote=False)  # a correct gradient in dtype
        noise = {n: (native[n].double() - ag[n]).abs() if dtype != torch.float64 else None for n in names}
        for wrong in ("W", "V"):
            caught_full, caught_tensor, caught_vector = 0, dict.fromkeys(ks, 0), dict.fromkeys(ks, 0)
            g = torch.Generator().manual_seed(1)
            for trial in range(trials):
                analytic = {n: native[n].clone() for n in names}
                index = int(torch.randint(analytic[wrong].numel(), (1,), generator=g))
                analytic[wrong].view(-1)[index] *= 2  # 100% wrong
                rounding = generic_rounding(ag[wrong], noise[wrong], dtype)
                full = judge(wrong, analytic[wrong], tuple(params[wrong].shape), ag[wrong], ag[wrong],
                             torch.zeros_like(ag[wrong]), rounding, dtype)
                caught_full += full.status == "fail"
                for k in ks:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", InconclusiveWarning)
                        try:
                            assert_gradients_agree(loss, params, analytic, max_full_elements=0, directions=k,
                                                   seed=trial)
                        except GradientMismatchError:
                            caught_tensor[k] += 1
                for k, failed in _whole_vector(loss, params, analytic, ag, noise, ks, trial).items():
                    caught_vector[k] += failed
            pct = lambda c: f"{100 * c / trials:.0f}%"
            rows.append([str(dtype).replace("torch.", ""), f"{wrong} ({params[wrong].numel():,})", pct(caught_full),
                         *(pct(caught_tensor[k]) for k in ks), *(pct(caught_vector[k]) for k in ks)])
            print(f"  {dtype} {wrong}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    print()
    sizes = ", ".join(f"{n} {v.numel():,}" for n, v in params.items())
    print(f"One element doubled, {trials} trials each, MLP with P = {sum(v.numel() for v in params.values()):,} "
          f"({sizes}):\n")
    print(table(["dtype", "wrong tensor (elements)", "full check",
                 *(f"per tensor, k={k}" for k in ks), *(f"whole vector, k={k}" for k in ks)], rows, "llrrrrrrr"))


def run(*, quick: bool = False, threads: int | None = None, detect: bool = True) -> dict[int, dict[str, float]]:
    """Without ``detect`` (the targets alone): no detection trials, and speed(targets=True)."""
    heading("Target 3: a generic loss (MLP closure) through assert_gradients_agree")
    figures = speed(quick=quick, threads=threads, targets=not detect)
    if detect:
        print()
        detection(quick=quick)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--only", choices=("speed", "detection"))
    options = parser.parse_args()
    if options.only != "detection":
        speed(quick=options.quick)
    if options.only != "speed":
        detection(quick=options.quick, trials=options.trials)


if __name__ == "__main__":
    main()
