"""The default verdict over PyTorch's own operator corpus: false alarms and detection power.

For every differentiable operator of ``torch.testing._internal.common_methods_invocations.op_db`` (its first
three CPU samples, float64 and float32), a loss ``sum_k (output_k * w_k).sum()`` with fixed random weights
``w_k`` is formed over the sample's floating tensor arguments, and its gradient is computed a *different*
correct way than the references: forward-mode AD (``torch.func.jacfwd``) in the dtype being judged, or, in
float32 where an operator has no forward-mode AD, the float64 autograd gradient rounded to float32. That
gradient is judged by the default policy (``assert_gradients_agree``): any failure is a false alarm.

Detection: the same gradient with one element multiplied by 1 + 1e-4 (float64) or 1 + 1e-2 (float32), one
random element per parameter and trial, is judged again on the same references; the share caught is
tabled by the element's size relative to the tensor's largest entry. Elements the verdict calls inconclusive
are counted apart (nothing can be said there).

``python -m benchmarks.opdb_sweep`` runs every operator (tens of minutes on a loaded 2-core machine);
``--every N`` takes every N-th operator, ``--ops NAME...`` only those named.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

# Corruption and bucket edges of the detection targets.
CORRUPTION = {torch.float64: 1e-4, torch.float32: 1e-2}
BUCKETS = (1e-2, 1e-4, 1e-8, 0.0)  # lower edges of |element| / max|gradient|
SAMPLES_PER_OP = 3
TRIALS = 3  # corrupted elements per parameter and sample
MAX_ELEMENTS = 2048  # larger samples are skipped: jacfwd materialises a Jacobian per output element


@dataclass
class Tally:
    judged: int = 0
    false_alarms: list[str] = field(default_factory=list)
    # Failures where the alternative gradient itself is shown wrong (see alternative_is_wrong): detections, with
    # the evidence, and what a second correct alternative (float32 only) then gave.
    wrong_alternatives: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    inconclusive_elements: int = 0
    elements: int = 0
    caught: Counter[tuple[str, float]] = field(default_factory=Counter)
    tried: Counter[tuple[str, float]] = field(default_factory=Counter)
    uncaught_inconclusive: Counter[tuple[str, float]] = field(default_factory=Counter)
    missed: list[str] = field(default_factory=list)
    # The operators whose gradient op_db itself does not check (pytorch_skips_its_gradcheck), tallied apart.
    apart: Tally | None = None


def differentiable_ops(every: int = 1, names: tuple[str, ...] = ()) -> list:
    from torch.testing._internal.common_methods_invocations import op_db

    ops = [op for op in op_db if op.supports_autograd]
    if names:
        ops = [op for op in ops if op.name in names or f"{op.name}.{op.variant_test_name}" in names]
    return ops[::every]


def pytorch_skips_its_gradcheck(op) -> bool:
    """Whether op_db itself skips, or expects to fail, its finite-difference gradient check on the CPU
    (TestBwdGradients.test_fn_grad, run in float64): max_unpool with repeated indices, the rounding divisions,
    cov, istft, ... PyTorch holds that finite differences cannot check its gradient there: such operators are
    judged all the same, and tallied apart."""
    for info in op.decorators or ():
        active = getattr(info, "is_active", None)
        if active is None or not active("TestBwdGradients", "test_fn_grad", "cpu", torch.float64, {}):
            continue
        decorators = info.decorators if isinstance(info.decorators, (list, tuple)) else [info.decorators]
        if any(getattr(d, "__qualname__", "").startswith(("skip", "expectedFailure")) for d in decorators):
            return True
    return False


def _label(op) -> str:
    return op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")


@dataclass(frozen=True)
class Problem:
    """One sample as a loss of named floating tensors."""

    loss: Callable[..., Tensor]
    params: dict[str, Tensor]
    # The loss without its non-finite terms (entr of a negative element is -inf: Richardson's differences of
    # another element need the rest of the sum finite).
    finite_loss: Callable[..., Tensor] | None = None
    # The same loss with complex outputs kept (complex in, complex out), for the complex step; None where the
    # operator has no complex128 kernel on the CPU.
    complex_loss: Callable[..., Tensor] | None = None


def _problem(op, sample, dtype: torch.dtype, seed: int) -> Problem | None:
    leaves: dict[str, Tensor] = {}
    slots: list[tuple[str, object]] = []

    def lift(x: object, name: str) -> object:
        if isinstance(x, Tensor) and x.is_floating_point() and not x.is_complex() and x.layout == torch.strided:
            leaves[name] = x.detach().to(dtype)
            return ("leaf", name)
        return ("fixed", x)

    inputs = sample.input if isinstance(sample.input, (list, tuple)) else None
    if inputs is not None:
        first = [lift(x, f"input{i}") for i, x in enumerate(inputs)]
    else:
        first = lift(sample.input, "input")
    rest = [lift(x, f"arg{i}") for i, x in enumerate(sample.args)]
    slots = [("input", first), *(("arg", r) for r in rest)]
    if not leaves or sum(v.numel() for v in leaves.values()) > MAX_ELEMENTS:
        return None
    kwargs = sample.kwargs
    generator = torch.Generator().manual_seed(seed)
    weights: list[Tensor] = []

    def resolve(slot: object, p: dict[str, Tensor]) -> object:
        kind, value = slot  # type: ignore[misc]
        return p[value] if kind == "leaf" else value  # type: ignore[index]

    def terms(p: dict[str, Tensor], keep_complex: bool = False) -> list[Tensor]:
        head = [resolve(s, p) for s in first] if inputs is not None else resolve(first, p)  # type: ignore[union-attr]
        # PyTorch's own convention for checking gradients: op.gradcheck_wrapper makes the input of an op that reads
        # only half of a Hermitian matrix Hermitian (input + input.mH), and zeroes the masked-out (infinite) outputs
        # of masked reductions, so that every element has one derivative; for most ops it calls op as it is.
        out = op.gradcheck_wrapper(op.get_op(), head, *(resolve(r, p) for r in rest), **kwargs)
        outs = [o for o in (out if isinstance(out, (list, tuple)) else (out,))
                if isinstance(o, Tensor) and (o.is_floating_point() or (keep_complex and o.is_complex()))]
        while len(weights) < len(outs):
            weights.append(torch.randn(outs[len(weights)].shape, generator=generator, dtype=torch.float64))
        return [o * w.to(o.dtype) for o, w in zip(outs, weights)]

    def call(**p: Tensor) -> Tensor:
        return sum((t.sum() for t in terms(p)), torch.zeros((), dtype=dtype))

    def finite(**p: Tensor) -> Tensor:
        return sum((torch.where(torch.isfinite(t), t, 0).sum() for t in terms(p)), torch.zeros((), dtype=dtype))

    def complex_call(**p: Tensor) -> Tensor:
        return sum((t.sum() for t in terms(p, True)), torch.zeros((), dtype=torch.complex128))

    del slots
    with torch.no_grad():
        call(**leaves)  # draws the weights once, outside any vmap
    analytic_in_complex = torch.complex128 in op.supported_dtypes("cpu")
    return Problem(call, leaves, finite, complex_call if analytic_in_complex else None)


def _forward_mode(problem: Problem) -> dict[str, Tensor] | None:
    names = list(problem.params)
    try:
        jac = torch.func.jacfwd(lambda *xs: problem.loss(**dict(zip(names, xs))), argnums=tuple(range(len(names))))(
            *problem.params.values())
    except Exception:
        return None
    return {n: j.detach().reshape(problem.params[n].shape) for n, j in zip(names, jac)}


def _analytic(op, problem: Problem, dtype: torch.dtype) -> tuple[dict[str, Tensor], str] | None:
    """The gradient computed another correct way, and which way."""
    from gradcheckers.references import autograd_gradients

    if op.supports_forward_ad:
        got = _forward_mode(problem)
        if got is not None and all(g.dtype == dtype for g in got.values()):
            return got, FORWARD
    if dtype == torch.float32:
        ref = autograd_gradients(problem.loss, problem.params, list(problem.params))
        return {n: g.float() for n, g in ref.items()}, ROUNDED
    return None


FORWARD = "forward-mode AD"
ROUNDED = "float64 autograd rounded to float32"
# Richardson extrapolation of central differences, (4 D(h/2) - D(h)) / 3, truncation O(h^4): with h = 1e-2 |x|
# (1e-2 at x = 0; relative, so that a function defined for x > 0 only, -x log x, is not stepped across 0) that is
# ~1e-8 relative for a smooth function of unit scale, and the rounding of the differences ~u64 S / h ~ 1e-14 S.
# Its own error is estimated by the next level, |R(h) - R(h/2)| (which overestimates it by about 16x where the
# truncation dominates), plus that rounding.
RICHARDSON_STEP = 1e-2
# A NaN is off by any amount: it is wrong wherever autograd and Richardson's value are finite and agree to this
# relative precision (the function is differentiable there, and its derivative known to 4 digits).
NAN_EVIDENCE = 1e-4
# The alternative is called wrong where it is off from both float64 autograd and Richardson's value by more than
# this many times their own disagreement (and Richardson's error estimate): a margin no rounding explains.
EVIDENCE_FACTOR = 100.0
# Where Richardson's differences cannot resolve it (~1e-10 relative), the complex step can (no cancellation): the
# alternative is called wrong where the complex-step derivative and float64 autograd agree within this many ulps
# (two computations, one of them through an analytic extension that need not exist: agreeing to a few ulps by
# chance is no realistic event) and the alternative is off by EVIDENCE_FACTOR times more.
COMPLEX_AGREEMENT = 4.0


def _richardson(problem: Problem, name: str, index: int) -> tuple[float, float]:
    """d loss / d params[name][index] in float64 by Richardson-extrapolated central differences, with its error."""
    params = {k: v.double() for k, v in problem.params.items()}
    x = float(params[name].reshape(-1)[index])

    def loss_at(h: float) -> float:
        moved = params[name].clone()
        moved.view(-1)[index] = x + h
        with torch.no_grad():
            return float((problem.finite_loss or problem.loss)(**{**params, name: moved}))

    def central(h: float) -> float:
        return (loss_at(h) - loss_at(-h)) / (2 * h)

    h = RICHARDSON_STEP * (abs(x) or 1.0)
    d1, d2, d4 = central(h), central(h / 2), central(h / 4)
    r1, r2 = (4 * d2 - d1) / 3, (4 * d4 - d2) / 3
    scale = max(abs(loss_at(0.0)), abs(loss_at(h)), 1e-300)
    return r2, abs(r2 - r1) + 8 * 2.0**-53 * scale / (h / 4)


def _complex_step(problem: Problem, name: str, index: int) -> float | None:
    """d loss / d params[name][index] by the complex step, Im loss(x + ih) / h: no difference is taken, so no
    cancellation, and h = 1e-20 |x| leaves a truncation error of order h^2 (far below u64); None where the
    operator cannot take complex inputs. Only an analytic extension gives the derivative this way, which is why
    the value counts as evidence only where it also agrees with autograd to a few ulps (see COMPLEX_AGREEMENT)."""
    if problem.complex_loss is None:
        return None
    params = {k: v.to(torch.complex128) for k, v in problem.params.items()}
    x = params[name].reshape(-1)[index].real
    h = 1e-20 * max(float(x.abs()), 1.0)
    moved = params[name].clone()
    moved.view(-1)[index] += 1j * h
    try:
        with torch.no_grad():
            value = problem.complex_loss(**{**params, name: moved})
    except Exception:
        return None
    derivative = float(value.imag) / h
    return derivative if math.isfinite(derivative) else None


def alternative_is_wrong(problem: Problem, name: str, analytic: Tensor, oracle, verdict) -> str | None:
    """The evidence that the forward-mode gradient is itself wrong at the element the verdict blamed (NaN where
    autograd and Richardson's differences agree on a finite value, or off from both by more than EVIDENCE_FACTOR
    times their disagreement), or None where nothing shows it wrong (then the failure is a false alarm)."""
    if oracle.project is not None or (verdict.worst is None and "non-finite" not in verdict.message):
        return None
    got = analytic.double().reshape(-1)
    blamed = (~torch.isfinite(got) & torch.isfinite(oracle.autograd.reshape(-1))).nonzero().reshape(-1)
    index = int(blamed[0]) if blamed.numel() else int(torch.tensor(_flat_index(verdict.worst.index, analytic.shape)))
    ag = float(oracle.autograd.reshape(-1)[index])
    rich, rich_error = _richardson(problem, name, index)
    value = float(got[index])
    agreement = abs(ag - rich) + rich_error
    shown = (not math.isfinite(value) and math.isfinite(rich) and abs(ag - rich) <= NAN_EVIDENCE * abs(ag)) or (
        abs(value - ag) > EVIDENCE_FACTOR * agreement and abs(value - rich) > EVIDENCE_FACTOR * agreement)
    if not shown:
        step = _complex_step(problem, name, index)
        near = COMPLEX_AGREEMENT * 2.0**-53 * abs(ag)
        if step is None or not abs(step - ag) <= near or not abs(value - ag) > EVIDENCE_FACTOR * near:
            return None
        return (f"element {index}: forward-mode {value!r}, float64 autograd {ag!r}, complex step {step!r}: off by "
                f"{abs(value - ag):.3g}, {abs(value - ag) / near:.3g}x the {COMPLEX_AGREEMENT:g} ulps within which "
                "the complex step and autograd agree")
    if not math.isfinite(value):
        return (f"element {index}: forward-mode {value!r} where float64 autograd ({ag!r}) and Richardson ({rich!r}) "
                "agree on a finite derivative")
    return (f"element {index}: forward-mode {value!r}, float64 autograd {ag!r}, Richardson {rich!r} "
            f"(+-{rich_error:.1g}): off by {abs(value - ag):.3g}, {abs(value - ag) / agreement:.3g}x the references' "
            "own disagreement")


def _flat_index(index: tuple[int, ...], shape: torch.Size) -> int:
    flat = 0
    for i, n in zip(index, shape):
        flat = flat * n + i
    return flat


def _second_opinion(problem: Problem, name: str, oracle, dtype: torch.dtype) -> str:
    """The verdict on a second correct alternative where forward-mode AD was wrong: float64 autograd rounded to
    float32 in float32; in float64 there is no generic computation both correct and different from the
    references themselves (float64 autograd *is* the reference; differences are too coarse to judge by)."""
    from gradcheckers.compare import DEFAULT_TOLERANCE, _agreement

    if dtype != torch.float32:
        return "no second correct alternative in float64 (not judged again)"
    verdict = _agreement(name, oracle.autograd.float(), problem.params[name], oracle, DEFAULT_TOLERANCE, "sweep")
    return f"{ROUNDED}: {verdict.status}"


def _bucket(ratio: float) -> float:
    return next(edge for edge in BUCKETS if ratio >= edge)


def _corrupted(analytic: Tensor, index: int, delta: float) -> Tensor:
    wrong = analytic.clone()
    wrong.view(-1)[index] *= 1 + delta
    return wrong


def judge_sample(op, sample, dtype: torch.dtype, seed: int, tally: Tally) -> None:
    from gradcheckers.compare import DEFAULT_TOLERANCE, _agreement, _oracles

    problem = _problem(op, sample, dtype, seed)
    if problem is None:
        tally.skipped["no floating tensor argument or too large"] += 1
        return
    found = _analytic(op, problem, dtype)
    if found is None:
        tally.skipped["no forward-mode AD (float64)"] += 1
        return
    analytic, how = found
    names = list(problem.params)
    try:
        oracles = _oracles(problem.loss, problem.params, names, step=1e-5, max_full_elements=4096, directions=16,
                           seed=seed)
    except Exception as error:  # the operator's sample cannot run as a loss here (in-place, complex output)
        tally.skipped[f"references raise {type(error).__name__}"] += 1
        return
    tally.judged += 1
    what = f"{_label(op)} sample {seed % SAMPLES_PER_OP} {str(dtype)[6:]}"
    for n in names:
        if analytic[n].shape != problem.params[n].shape:
            tally.skipped["forward-mode gradient of another shape"] += 1
            continue
        verdict = _agreement(n, analytic[n], problem.params[n], oracles[n], DEFAULT_TOLERANCE, "sweep")
        tally.elements += problem.params[n].numel()
        tally.inconclusive_elements += verdict.inconclusive if oracles[n].project is None else 0
        if verdict.status == "fail":
            _failed(f"{what} {n}", problem, n, analytic[n], oracles[n], verdict, dtype, how, tally)
            continue
        _detect(what, n, problem, analytic[n], oracles[n], dtype, seed, tally)


def _failed(what: str, problem: Problem, name: str, analytic: Tensor, oracle, verdict, dtype: torch.dtype, how: str,
            tally: Tally) -> None:
    """A failure is a false alarm unless the alternative gradient is shown wrong there (then a detection, with its
    evidence and the verdict on a second correct alternative)."""
    evidence = alternative_is_wrong(problem, name, analytic, oracle, verdict) if how == FORWARD else None
    if evidence is None:
        tally.false_alarms.append(f"{what}: {verdict.message.splitlines()[0]}")
    else:
        tally.wrong_alternatives.append(f"{what}: {evidence}; {_second_opinion(problem, name, oracle, dtype)}")


def _detect(what: str, name: str, problem: Problem, analytic: Tensor, oracle, dtype: torch.dtype, seed: int,
            tally: Tally) -> None:
    from gradcheckers.compare import DEFAULT_TOLERANCE, _agreement
    from gradcheckers.tolerance import allowed_error

    numel = analytic.numel()
    if not numel:
        return
    generator = torch.Generator().manual_seed(seed)
    ref = problem_reference(problem, name, oracle)
    largest = float(ref.abs().max())
    # An element no larger than its own allowance is rounding noise around 0 (the gradient of normalize along
    # its own direction, say): a relative corruption of it is no error, and it is counted apart.
    noise = None if oracle.project is not None else (ref.abs() <= allowed_error(
        oracle.autograd, oracle.model.full.rounding[name].cpu(), dtype, DEFAULT_TOLERANCE)).reshape(-1)
    for _ in range(TRIALS):
        index = int(torch.randint(numel, (1,), generator=generator))
        value = float(ref.reshape(-1)[index].abs())
        if largest == 0 or value == 0 or not math.isfinite(value):
            continue
        if noise is not None and bool(noise[index]):
            tally.tried[(str(dtype)[6:], -1.0)] += 1
            continue
        key = (str(dtype)[6:], _bucket(value / largest))
        wrong = _corrupted(analytic, index, CORRUPTION[dtype])
        verdict = _agreement(name, wrong, problem.params[name], oracle, DEFAULT_TOLERANCE, "sweep")
        tally.tried[key] += 1
        if verdict.status == "fail":
            tally.caught[key] += 1
        elif verdict.inconclusive and oracle.project is None:
            tally.uncaught_inconclusive[key] += 1
            tally.missed.append(f"{what} {name}[{index}] = {value:.3g}: inconclusive")
        else:
            allowed = verdict.worst.allowed if verdict.worst else math.nan
            tally.missed.append(f"{what} {name}[{index}] = {value:.3g} ({value / largest:.2g} of the largest), "
                                f"allowed {allowed:.3g}")


def problem_reference(problem: Problem, name: str, oracle) -> Tensor:
    """The float64 autograd gradient of one parameter (the oracle holds projections beyond 4096 elements)."""
    if oracle.project is None:
        return oracle.autograd
    from gradcheckers.references import autograd_gradients

    return autograd_gradients(problem.loss, problem.params, [name])[name]


def sweep(ops: list, dtypes: tuple[torch.dtype, ...] = (torch.float64, torch.float32),
          progress: bool = False) -> Tally:
    tally = Tally()
    started = time.perf_counter()
    for k, op in enumerate(ops):
        into = tally
        if pytorch_skips_its_gradcheck(op):
            into = tally.apart = tally.apart or Tally()
            into.skipped[f"operators: {_label(op)}"] += 1
        for dtype in dtypes:
            for i, sample in enumerate(_samples(op)):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        judge_sample(op, sample, dtype, SAMPLES_PER_OP * k + i, into)
                    except Exception as error:  # a sample the loss cannot be formed from: count, never crash
                        into.skipped[f"sample raises {type(error).__name__}"] += 1
        if progress and k % 25 == 0:
            print(f"  {k}/{len(ops)} ops, {tally.judged} samples judged, {len(tally.false_alarms)} false alarms "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    return tally


def _samples(op) -> Iterator:
    try:
        samples = op.sample_inputs("cpu", torch.float64, requires_grad=False)
        for i, sample in enumerate(samples):
            if i >= SAMPLES_PER_OP:
                return
            yield sample
    except Exception:
        return


def report(tally: Tally) -> str:
    lines = _report(tally)
    if tally.apart is not None:
        operators = [why.partition(": ")[2] for why in tally.apart.skipped if why.startswith("operators: ")]
        lines += ["", f"## Operators whose gradient op_db itself does not check ({len(operators)}: "
                  f"{', '.join(operators)})",
                  "Their finite-difference check is skipped or expected to fail in PyTorch's own tests (repeated",
                  "indices, rounding steps, dtype conversions, ...): tallied apart, not in the figures above.", ""]
        tally.apart.skipped = Counter({why: n for why, n in tally.apart.skipped.items()
                                       if not why.startswith("operators: ")})
        lines += _report(tally.apart)
    return "\n".join(lines)


def _report(tally: Tally) -> list[str]:
    lines = [f"samples judged: {tally.judged}; parameter elements {tally.elements:,}, "
             f"{tally.inconclusive_elements:,} inconclusive",
             f"false alarms: {len(tally.false_alarms)}"]
    lines += [f"  {line}" for line in tally.false_alarms]
    lines.append(f"forward-mode AD shown wrong (detections, not false alarms): {len(tally.wrong_alternatives)}")
    lines += [f"  {line}" for line in tally.wrong_alternatives]
    lines.append("skipped: " + (", ".join(f"{why} {n}" for why, n in tally.skipped.most_common()) or "none"))
    lines.append("")
    lines.append("elements within their own allowance of 0 (rounding noise, not corrupted): "
                 + ", ".join(f"{d} {tally.tried[(d, -1.0)]}" for d in ("float64", "float32")))
    lines.append("")
    lines.append("| dtype (corruption) | element / largest | caught | of | share | not caught, inconclusive |")
    lines.append("| --- | --- | --: | --: | --: | --: |")
    for dtype in ("float64", "float32"):
        for edge, upper in zip(BUCKETS, (math.inf, *BUCKETS)):
            key = (dtype, edge)
            tried = tally.tried[key]
            share = f"{100 * tally.caught[key] / tried:.1f}%" if tried else "-"
            span = f">= {edge:g}" if upper == math.inf else f"{edge:g} - {upper:g}"
            delta = CORRUPTION[getattr(torch, dtype)]
            lines.append(f"| {dtype} ({delta:g}) | {span} | {tally.caught[key]} | {tried} | {share} | "
                         f"{tally.uncaught_inconclusive[key]} |")
    lines.append(f"\ncorrupted elements not caught (first 40 of {len(tally.missed)}):")
    lines += [f"  {line}" for line in tally.missed[:40]]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=1, help="take every N-th differentiable operator")
    parser.add_argument("--ops", nargs="*", default=(), help="only these operators (name or name.variant)")
    options = parser.parse_args()
    torch.set_num_threads(1)
    ops = differentiable_ops(options.every, tuple(options.ops))
    started = time.perf_counter()
    tally = sweep(ops, progress=True)
    print(f"\n{len(ops)} differentiable operators of op_db, first {SAMPLES_PER_OP} samples, float64 and float32, "
          f"{time.perf_counter() - started:.0f} s\n")
    print(report(tally))


if __name__ == "__main__":
    main()
