"""The property check: a set of gradient formulas against the references over Hypothesis-drawn cases.

One Hypothesis run per parameter, so that each parameter gets its own smallest counterexample. The runs
share the references through a cache keyed by case: with the same seed every run draws the same cases, so
the oracles are paid for once. This is what the pytest plugin and the course gate both call.
"""

from __future__ import annotations

import math
import os
import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import hypothesis
import torch
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from torch import Tensor

from gradcheckers import strategies
from gradcheckers._threads import one_thread_if_small
from gradcheckers.assignment import DEFAULT_ASSIGNMENT, SIZE_NAMES, Assignment, Case, get_assignment
from gradcheckers.compare import Limits, Verdict, WorstElement, judge_with_limits
from gradcheckers.errors import InvalidArgument, SubmissionFailure
from gradcheckers.forward_verdict import FORWARD, forward_spread, judge_forward, reference_forward
from gradcheckers.references import References, compute_references
from gradcheckers.rounding import RoundingModel
from gradcheckers.tolerance import Tolerance, allowed_error, references_agree

__all__ = [
    "CheckResult",
    "CheckSettings",
    "ParameterResult",
    "check_formulas",
    "check_forward",
    "evaluate_case",
    "evaluate_forward",
    "formulas_from_namespace",
]

Formula = Callable[..., object]
# Failures after which retrying costs a full limit each time: stop the parameter's run at the first one
# rather than let Hypothesis shrink through one timeout per step.
ABORTING_REASONS = frozenset({"timeout", "memory"})


DEVICES_ENVIRONMENT = "GRADCHECKERS_DEVICES"
# Bundled assignments drawn at the seed's four sizes: size_bounds for them are checked at once.
_FOUR_SIZED = frozenset({"two-layer-sigmoid", "two-layer-tanh", "two-layer-relu", "two-layer-mse-mean",
                         "softmax-classifier", "logistic-regression"})


def default_devices() -> tuple[str, ...]:
    """``("cpu",)``, or the comma-separated devices in ``$GRADCHECKERS_DEVICES``."""
    names = tuple(n.strip() for n in os.environ.get(DEVICES_ENVIRONMENT, "cpu").split(",") if n.strip())
    return names or ("cpu",)


@dataclass(frozen=True)
class CheckSettings:
    """Everything that decides a check's verdicts; equal settings give equal verdicts."""

    max_examples: int = 100
    seed: int = 0
    dtypes: tuple[str, ...] = ("float64", "float32")
    # Verdicts must not depend on the machine (a course cannot grade on which box ran the check), so the
    # default is the CPU alone; GRADCHECKERS_DEVICES=cpu,cuda (or devices=...) adds accelerators, and
    # None means every available device.
    devices: tuple[str, ...] | None = field(default_factory=lambda: default_devices())
    stress: bool = False
    rtol: float | None = None
    atol: float | None = None
    size_bounds: Mapping[str, tuple[int, int]] = field(
        default_factory=lambda: dict(strategies.DEFAULT_SIZE_BOUNDS)
    )
    assignment: str = DEFAULT_ASSIGNMENT
    # A directory for Hypothesis's example database, for local exploration only: earlier failures are then
    # replayed first. None (the default, and what the gate uses) keeps verdicts a function of the seed alone.
    database: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_examples, int) or isinstance(self.max_examples, bool) or self.max_examples < 1:
            raise InvalidArgument(f"max_examples={self.max_examples!r} must be a positive integer")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**64:
            raise InvalidArgument(f"seed={self.seed!r} must be a non-negative integer")
        Tolerance(self.rtol, self.atol)
        strategies.dtypes(self.dtypes)
        strategies.devices(self.devices)
        for name, (lo, hi) in self.size_bounds.items():
            # The seed's four sizes, or (checked when the cases are drawn) an assignment's own named sizes.
            if name not in SIZE_NAMES and isinstance(self.assignment, str) and self.assignment in _FOUR_SIZED:
                raise InvalidArgument(f"size_bounds has an unknown size {name!r} (known: {SIZE_NAMES})")
            strategies._check_bounds(name, lo, hi)

    @property
    def tolerance(self) -> Tolerance:
        return Tolerance(self.rtol, self.atol)

    def case_strategy(self, assignment: Assignment) -> st.SearchStrategy[Case]:
        if assignment.sizes is not None:
            own = {n: b for n, b in self.size_bounds.items() if n not in strategies.DEFAULT_SIZE_BOUNDS}
            unknown = [n for n in own if n not in assignment.sizes]
            if unknown:
                raise InvalidArgument(f"size_bounds has an unknown size {unknown[0]!r} (known: "
                                      f"{', '.join(assignment.sizes)})")
            own.update({n: b for n, b in self.size_bounds.items() if n in assignment.sizes})
            return strategies.cases(assignment, sizes=own, dtype=strategies.dtypes(self.dtypes),
                                    device=strategies.devices(self.devices), stress=self.stress)
        bounds = {**strategies.DEFAULT_SIZE_BOUNDS, **self.size_bounds}
        sizes = strategies.sizes(**{f"{m}_{n}": b[i] for n, b in bounds.items() for i, m in enumerate(("min", "max"))})
        return strategies.cases(
            assignment,
            sizes=sizes,
            dtype=strategies.dtypes(self.dtypes),
            device=strategies.devices(self.devices),
            stress=self.stress,
        )


@dataclass(frozen=True)
class ParameterResult:
    """The outcome for one parameter: pass, or the smallest failing case and why it fails."""

    parameter: str
    passed: bool
    examples: int
    inconclusive: int = 0
    reason: str | None = None
    message: str | None = None
    counterexample: Case | None = None
    worst: WorstElement | None = None
    diagnosis: str | None = None
    snippet: str | None = None  # Python rebuilding the failing case by hand (report.counterexample_snippet)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "examples": self.examples,
            "inconclusive": self.inconclusive,
            "reason": self.reason,
            "message": self.message,
            "counterexample": None if self.counterexample is None else self.counterexample.to_json(),
            "worst": None if self.worst is None else _finite_json(self.worst.__dict__),
            "diagnosis": self.diagnosis,
            "snippet": self.snippet,
        }


def _finite_json(values: Mapping[str, Any]) -> dict[str, Any]:
    # JSON has no NaN or infinity: write them as strings rather than produce an invalid document.
    return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a whole check: one :class:`ParameterResult` per parameter."""

    assignment: str
    settings: CheckSettings
    parameters: dict[str, ParameterResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.parameters.values())

    @property
    def seed(self) -> int:
        return self.settings.seed

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "seed": self.seed,
            "assignment": self.assignment,
            "parameters": {name: r.to_json() for name, r in self.parameters.items()},
        }


# --------------------------------------------------------------------------------------------------------
# One case


class _ReferenceCache:
    """References by case, least recently used first out; the four parameter runs draw the same cases."""

    def __init__(self, assignment: Assignment, size: int = 2048) -> None:
        self.assignment = assignment
        self.size = size
        self._entries: OrderedDict[Case, tuple[dict[str, Tensor], References]] = OrderedDict()
        self._limits: OrderedDict[tuple[Case, Tolerance, bool], dict[str, Limits]] = OrderedDict()

    def get(self, case: Case) -> tuple[dict[str, Tensor], References]:
        entry = self._entries.get(case)
        if entry is None:
            args = self.assignment.tensors(case)
            with one_thread_if_small(args.values()):
                entry = (args, compute_references(self.assignment.bound(case), args))
            self._entries[case] = entry
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(case)
        return entry

    def limits(self, case: Case, tolerance: Tolerance, *, refined: bool = False) -> dict[str, Limits]:
        """Per parameter, what the verdict needs from the references alone (:class:`gradcheckers.compare.Limits`).

        Without a hand-written rounding analysis the allowances come from the generic rounding model
        (:mod:`gradcheckers.rounding`): its floor unless ``refined``, its draws then (see ``evaluate_case``).
        Worked out for every parameter of the case at once, elementwise over their concatenation (the same
        numbers as per parameter): one set of tensor operations per case instead of one per parameter and
        example, which was a fifth of an example's own cost (python -m benchmarks.run --only throughput)."""
        key = (case, tolerance, refined)
        found = self._limits.get(key)
        if found is not None:
            self._limits.move_to_end(key)
            return found
        args, refs = self.get(case)
        dtype = getattr(torch, case.dtype)
        names = [name for name in self.assignment.parameters if name in refs.autograd]

        def flat(tensors: Mapping[str, Tensor]) -> Tensor:
            return torch.cat([tensors[name].reshape(-1) for name in names])

        autograd = flat(refs.autograd)
        estimate = None
        if refs.rounding is None:
            model = RoundingModel(self.assignment.bound(case).loss, args, names, refs.autograd)
            estimate = model.full if refined else model.floor
        rounding = flat(estimate.for_dtype(dtype) if estimate is not None else refs.rounding or {})
        conclusive = references_agree(autograd, flat(refs.finite_differences), flat(refs.fd_error), rounding)
        if estimate is not None:
            conclusive &= ~flat(estimate.unstable if dtype != torch.float64 else estimate.kinked)
        kinked = None
        if refs.kinked is not None:
            kinked = {n: refs.kinked[n] if n in refs.kinked else torch.zeros_like(refs.autograd[n], dtype=torch.bool)
                      for n in names}
            conclusive &= ~flat(kinked)
        allowed = allowed_error(autograd, rounding, dtype, tolerance)
        sizes = [refs.autograd[n].numel() for n in names]
        found = {
            n: Limits(c.view_as(refs.autograd[n]), a.view_as(refs.autograd[n]), None if kinked is None else kinked[n])
            for n, c, a in zip(names, conclusive.split(sizes), allowed.split(sizes))
        }
        self._limits[key] = found
        if len(self._limits) > self.size:
            self._limits.popitem(last=False)
        return found


def _guarded(formula: Formula, name: str, arguments: Sequence[str]) -> Formula:
    """Call an in-process formula on fresh copies and refuse in-place changes to its inputs."""

    def call(*args: Tensor, **hyper: Any) -> object:
        copies = [a.clone() for a in args]
        try:
            result = formula(*copies, **hyper)
        except SubmissionFailure:
            raise
        except Exception as error:  # the formula's own bug: reported, never a crash of the checker
            raise SubmissionFailure("error", f"{name} raised {_describe_exception(error)}") from None
        changed = [arguments[i] if i < len(arguments) else str(i)
                   for i, (a, c) in enumerate(zip(args, copies)) if not torch.equal(a, c)]
        if changed:
            raise SubmissionFailure(
                "mutated-input",
                f"{name} modified its input(s) {', '.join(changed)} in place; compute new tensors instead "
                "(the caller's data must not change)",
            )
        return result

    return call


def _describe_exception(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def evaluate_case(
    parameter: str,
    formula: Formula,
    case: Case,
    assignment: Assignment,
    cache: _ReferenceCache,
    tolerance: Tolerance,
    function: str | None = None,
) -> Verdict:
    """Run one formula on one case and judge its result."""
    args, refs = cache.get(case)
    ordered = [args[name] for name in assignment.arguments]
    with one_thread_if_small(ordered):
        try:
            value = formula(*ordered, **assignment.hyperparameter_values(case))
        except SubmissionFailure as failure:
            return Verdict(parameter, "fail", failure.reason, failure.message, f"Case: {case.describe()}")
        limits = cache.limits(case, tolerance)[parameter]
        # The generic rounding model's draws only where the gradient does not agree under its floor.
        refine = None if refs.rounding is not None else lambda: cache.limits(case, tolerance, refined=True)[parameter]
        return judge_with_limits(
            parameter,
            value,
            tuple(args[parameter].shape),
            refs.autograd[parameter],
            refs.finite_differences[parameter],
            refs.fd_error[parameter],
            limits.conclusive,
            limits.allowed,
            getattr(torch, case.dtype),
            context=lambda: f"Case: {case.describe()}",
            function=function,
            kinked=limits.kinked,
            refine=refine,
        )


# --------------------------------------------------------------------------------------------------------
# One parameter's Hypothesis run


class _CaseFailed(AssertionError):
    def __init__(self, verdict: Verdict, case: Case) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict
        self.case = case


class _Abort(BaseException):
    """Stops a Hypothesis run at once (Hypothesis shrinks on Exception, not on BaseException)."""

    def __init__(self, verdict: Verdict, case: Case) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict
        self.case = case


def _hypothesis_settings(max_examples: int, database: str | None = None) -> hypothesis.settings:
    # No deadline (a gate must not fail a slow but right formula), no example database unless asked for (a
    # course cannot grade on what an earlier run happened to store), no health checks (slow submissions are
    # not ours to judge), and one bug per run: the smallest case of the parameter's first failure.
    from hypothesis.database import DirectoryBasedExampleDatabase

    return hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        database=None if database is None else DirectoryBasedExampleDatabase(database),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        verbosity=hypothesis.Verbosity.quiet,
        print_blob=False,
    )


@dataclass
class _Search:
    """What one Hypothesis run found: the distinct cases tried, those that were inconclusive, and the smallest
    failing case with its verdict (None when every case passed); ``flaky``: a case failed once and not again."""

    seen: set[Case] = field(default_factory=set)
    # Distinct cases, as `seen` counts them: Hypothesis may run a case twice, and a case counted twice as
    # inconclusive once read "passed on -2 conclusive cases".
    inconclusive: set[Case] = field(default_factory=set)
    failure: tuple[Verdict, Case] | None = None
    flaky: bool = False


def _search(evaluate: Callable[[Case], Verdict], settings: CheckSettings, assignment: Assignment) -> _Search:
    """The smallest case on which ``evaluate`` fails, over the settings' cases of ``assignment``."""
    found = _Search()

    @_hypothesis_settings(settings.max_examples, settings.database)
    @hypothesis.seed(settings.seed)
    @hypothesis.given(settings.case_strategy(assignment))
    def run(case: Case) -> None:
        found.seen.add(case)
        verdict = evaluate(case)
        if verdict.status == "fail":
            if verdict.reason in ABORTING_REASONS:
                raise _Abort(verdict, case)
            raise _CaseFailed(verdict, case)
        if verdict.status == "inconclusive":
            found.inconclusive.add(case)

    try:
        run()
    except (_CaseFailed, _Abort) as failure:
        found.failure = (failure.verdict, failure.case)
    except Flaky:
        found.flaky = True
    return found


def _passed(name: str, search: _Search, why_inconclusive: str) -> ParameterResult:
    inconclusive = len(search.inconclusive)
    # Said plainly: these cases proved nothing either way (the references disagreed there).
    note = (f"passed on {len(search.seen) - inconclusive} conclusive case(s); {inconclusive} case(s) were "
            f"inconclusive ({why_inconclusive})") if inconclusive else None
    return ParameterResult(name, True, len(search.seen), inconclusive, message=note)


def check_parameter(
    parameter: str,
    formula: Formula | None,
    *,
    settings: CheckSettings,
    assignment: Assignment,
    cache: _ReferenceCache | None = None,
    function: str | None = None,
) -> ParameterResult:
    """Search for the smallest case on which ``formula`` gets ``parameter``'s gradient wrong."""
    signature = f"({', '.join(assignment.arguments)})"
    if formula is None:
        return ParameterResult(
            parameter,
            False,
            0,
            reason="missing",
            message=f"no function grad_{parameter}{signature} and no gradients{signature} returning a "
            f"mapping with the key {parameter!r}",
        )
    references = cache or _ReferenceCache(assignment)
    tolerance = settings.tolerance
    search = _search(lambda case: evaluate_case(parameter, formula, case, assignment, references, tolerance, function),
                     settings, assignment)
    if search.flaky:
        return ParameterResult(
            parameter, False, len(search.seen), len(search.inconclusive), "error",
            f"the gradient of {parameter} changed between two calls with the same inputs: the formula "
            "depends on something other than its arguments (global state, randomness, call count)",
        )
    if search.failure is None:
        return _passed(parameter, search, "autograd and finite differences disagreed: kinks or overflow")
    verdict, case = search.failure
    diagnosis = diagnose(parameter, formula, case, verdict, assignment, references, tolerance)
    return ParameterResult(
        parameter,
        False,
        len(search.seen),
        len(search.inconclusive),
        verdict.reason,
        verdict.message,
        case,
        verdict.worst,
        diagnosis,
        _snippet(parameter, formula, case, verdict, assignment, references, function),
    )


def evaluate_forward(formula: Formula, case: Case, assignment: Assignment, cache: _ReferenceCache,
                     tolerance: Tolerance) -> Verdict:
    """Run a submission's forward on one case and judge its output against the assignment's reference forward."""
    assert assignment.forward is not None
    args, _ = cache.get(case)
    hyper = assignment.hyperparameter_values(case)
    with one_thread_if_small(args.values()):
        try:
            value = formula(*[args[name] for name in assignment.arguments], **hyper)
        except SubmissionFailure as failure:
            return Verdict(FORWARD, "fail", failure.reason, failure.message, f"Case: {case.describe()}")
        # The reference in float64 on the very inputs the submission received (a float32 input is exact in float64).
        exact = {n: (t.detach().cpu().double() if t.is_floating_point() else t.detach().cpu()) for n, t in args.items()}
        names, forward = list(exact), assignment.forward
        dtype = getattr(torch, case.dtype)
        by_position = lambda *a, **h: forward(**dict(zip(names, a)), **h)
        reference = reference_forward(by_position, list(exact.values()), hyper)
        got = torch.as_tensor(value).detach().cpu()
        return judge_forward(got, reference, dtype, tolerance, lambda: f"Case: {case.describe()}",
                             lambda: forward_spread(by_position, list(exact.values()), hyper, dtype, reference))


def check_forward(
    formula: Formula | None,
    *,
    settings: CheckSettings,
    assignment: Assignment,
    cache: _ReferenceCache | None = None,
) -> ParameterResult:
    """Search for the smallest case on which a submission's forward output differs from ``assignment.forward``.

    Its result is named ``forward`` and drawn from the same cases as the gradients' (same strategy, same seed), so
    the references it computes on the way are the ones the gradients' runs use next."""
    if assignment.forward is None:
        raise InvalidArgument(f"assignment {assignment.name!r} has no reference forward to check a forward against")
    if formula is None:
        return ParameterResult(FORWARD, False, 0, reason="missing", message="the submission defines no forward")
    references = cache or _ReferenceCache(assignment)
    tolerance = settings.tolerance
    search = _search(lambda case: evaluate_forward(formula, case, assignment, references, tolerance), settings,
                     assignment)
    if search.flaky:
        return ParameterResult(
            FORWARD, False, len(search.seen), len(search.inconclusive), "error",
            "the forward's output changed between two calls with the same inputs: it depends on something other "
            "than its arguments (global state, randomness, call count)",
        )
    if search.failure is None:
        return _passed(FORWARD, search, "the reference forward was not finite there")
    verdict, case = search.failure
    return ParameterResult(FORWARD, False, len(search.seen), len(search.inconclusive), verdict.reason,
                           verdict.message, case, verdict.worst)


def _snippet(
    parameter: str, formula: Formula, case: Case, verdict: Verdict, assignment: Assignment,
    cache: _ReferenceCache, function: str | None,
) -> str | None:
    """The failing case as paste-able Python, for failures that returned something (one more call)."""
    from gradcheckers.report import counterexample_snippet

    if verdict.reason not in ("mismatch", "shape", "non-finite"):
        return None
    args, refs = cache.get(case)
    try:
        value = formula(*[args[n].clone() for n in assignment.arguments])
        returned = torch.as_tensor(value).detach().cpu().tolist()
    except Exception:
        returned = None
    inputs = {name: args[name].detach().cpu().tolist() for name in assignment.arguments}
    return counterexample_snippet(parameter, inputs, refs.autograd[parameter].tolist(), returned, case.dtype, function)


def diagnose(
    parameter: str,
    formula: Formula,
    case: Case,
    verdict: Verdict,
    assignment: Assignment,
    cache: _ReferenceCache,
    tolerance: Tolerance,
) -> str | None:
    """A likely cause, where the pattern of the failure is a known one. A hint, never part of the verdict.

    Nothing is said that the case cannot show: on a one-element gradient every mismatch is "a constant factor",
    so a factor is reported only where a larger case confirms it."""
    if verdict.reason not in ("mismatch", "shape", "error"):
        return None
    # A constant factor on every element is the most specific diagnosis: look for it first (an MSE mean is
    # also "right for one output", but "divided by batch * n_output" says more). A missing 1/N is a factor N, not
    # a missing sum: it is caught here, before the sizes below are tried.
    if verdict.reason == "mismatch":
        if _tiny_relative(parameter, formula, case, assignment, cache):
            return TINY_RELATIVE
        factor = _constant_factor(parameter, formula, case, assignment, cache)
        if factor is not None:
            return factor
    for size, label in (
        ("batch", "right for a batch of 1 and wrong for larger batches: the per-sample terms are not summed "
                  "over the batch (a bias gradient sums over dim 0; in X.T @ (...) the whole per-sample term "
                  "must be inside the product), or they are averaged instead of summed"),
        ("n_output", "right for one output and wrong for several: look for a transpose or a broadcast that "
                     "only works when n_output == 1"),
        ("n_feature", "right for one input feature and wrong for several: look for X used where X.T is "
                      "needed, or a single column of X"),
        ("n_hidden", "right for one hidden unit and wrong for several: look for a transpose of W2 or of "
                     "the hidden layer"),
    ):
        if assignment.sizes is not None or size not in case.sizes:  # the seed's sizes only
            continue
        if case.sizes[size] > 1 and assignment.min_sizes.get(size, 1) <= 1:  # never an invalid case
            smaller = case.replace(**{size: 1})
            if evaluate_case(parameter, formula, smaller, assignment, cache, tolerance).status == "pass":
                return label
    return None


TINY_RELATIVE = ("every element is off by a tiny relative amount: the loss differentiated must be the loss the "
                 "formula differentiates (a safety epsilon such as log(p + 1e-8) changes the loss, not the formula)")


def _tiny_relative(
    parameter: str, formula: Formula, case: Case, assignment: Assignment, cache: _ReferenceCache
) -> bool:
    """Whether a float64 mismatch is between 1e-10 and 1e-4 relative on every sizeable element: too large for
    rounding in float64, too small for a mistake in a formula; the signature of a slightly different function."""
    if case.dtype != "float64":
        return False
    args, refs = cache.get(case)
    try:
        value = formula(*[args[n] for n in assignment.arguments], **assignment.hyperparameter_values(case))
        got = torch.as_tensor(value).detach().cpu().double().reshape(-1)
    except Exception:
        return False
    ref = refs.autograd[parameter].reshape(-1)
    if got.shape != ref.shape or not bool(ref.abs().max() > 0):
        return False
    mask = ref.abs() > 1e-3 * ref.abs().max()
    rel = ((got - ref).abs() / ref.abs())[mask]
    return bool((rel < 1e-4).all()) and float(rel.max()) > 1e-10


def _ratio(
    parameter: str, formula: Formula, case: Case, assignment: Assignment, cache: _ReferenceCache
) -> tuple[float, int] | None:
    """(analytic / reference, the number of elements compared) when the ratio is the same on every sizeable
    element (within 1e-6), else None."""
    args, refs = cache.get(case)
    try:
        value = formula(*[args[n] for n in assignment.arguments], **assignment.hyperparameter_values(case))
        got = torch.as_tensor(value).detach().cpu().double().reshape(-1)
    except Exception:
        return None
    ref = refs.autograd[parameter].reshape(-1)
    if got.shape != ref.shape:
        return None
    mask = ref.abs() > 1e-6 * ref.abs().max()
    if not bool(mask.any()):
        return None
    ratios = got[mask] / ref[mask]
    r = float(ratios.median())
    if not math.isfinite(r) or float((ratios - r).abs().max()) > 1e-6 * max(1.0, abs(r)):
        return None
    return r, int(mask.sum())


# Constant factors with a known cause, as functions of (batch, n_output).
_FACTORS: tuple[tuple[Callable[[int, int], float], str], ...] = (
    (lambda n, o: -1.0, "the sign is flipped"),
    (lambda n, o: 0.5, "a factor 2 is missing (d/dx of x^2 is 2x)"),
    (lambda n, o: 2.0, "a factor 2 too many"),
    (lambda n, o: -0.5, "the sign is flipped and a factor 2 is missing"),
    (lambda n, o: 1.0 / (n * o) if o > 1 else math.nan,
     "divided by batch * n_output: the mean of MSELoss's default reduction, where f sums the squares"),
    (lambda n, o: 1.0 / n if n > 1 else math.nan, "divided by the batch size: a mean where the loss sums"),
    (lambda n, o: float(n * o) if o > 1 else math.nan,
     "multiplied by batch * n_output: the 1/(batch * n_output) of the loss's mean is missing (every term is "
     "summed, but the loss averages them)"),
    (lambda n, o: float(n) if n > 1 else math.nan,
     "multiplied by the batch size: the 1/N of a mean over the batch is missing (the loss averages over the "
     "batch, the gradient sums), not a missing sum"),
)


def _sizes_n_o(c: Case) -> tuple[int, int]:
    return int(c.sizes.get("batch", 1) or 1), int(c.sizes.get("n_output", 1) or 1)


def _constant_factor(
    parameter: str, formula: Formula, case: Case, assignment: Assignment, cache: _ReferenceCache
) -> str | None:
    found_ratio = _ratio(parameter, formula, case, assignment, cache)
    if found_ratio is not None and found_ratio[0] == 0.0 and found_ratio[1] > 1:
        return "the gradient is zero everywhere: a placeholder, or a factor that vanishes"
    if found_ratio is None or abs(found_ratio[0] - 1.0) <= 1e-6:
        # 1: the same numbers as the reference, yet the case failed, so the formula gave another result on
        # an earlier call with the same inputs; there is no constant factor to report.
        return None
    r, count = found_ratio

    def matches(ratio: float, c: Case) -> list[str]:
        n, o = _sizes_n_o(c)
        return [text for factor, text in _FACTORS
                if math.isfinite(factor(n, o)) and abs(ratio - factor(n, o)) <= 1e-6 * abs(factor(n, o))]

    found = matches(r, case)
    bigger = _bigger(case, assignment)
    if bigger is not None and (len(found) > 1 or count < 2):
        # At batch 2 a mean over the batch is also "a factor 2 missing", and one element is always "a constant
        # factor": a larger case tells them apart, or shows there is no constant factor at all.
        again = _ratio(parameter, formula, bigger, assignment, cache)
        if again is None:
            return None
        confirmed = [text for text in found if text in matches(again[0], bigger)]
        if not confirmed and (found or abs(again[0] - r) > 1e-6 * abs(r)):
            return None
        found = confirmed
        count = max(count, again[1])
    if found:
        return f"a constant factor {r:.4g} off: {found[0]}"
    if count < 2:
        return None  # one element: any mismatch is "a constant factor", which says nothing
    return f"off by a constant factor {r:.6g} on every element"


def _bigger(case: Case, assignment: Assignment) -> Case | None:
    """A larger valid case to confirm a factor on: the seed's batch and n_output grown, or every named size + 1."""
    if assignment.sizes is None:
        fixed = assignment.fixed_sizes
        changes = {n: case.sizes[n] + step for n, step in (("batch", 2), ("n_output", 1)) if n not in fixed}
        return case.replace(**changes) if changes else None
    grown = {}
    for name, bound in assignment.sizes.items():
        value = case.sizes[name]
        if isinstance(bound, tuple) and value < bound[1]:
            grown[name] = value + 1
    if not grown:
        return None
    sizes = case.sizes.replace(**grown)
    if assignment.constraint is not None and not assignment.constraint(sizes):
        return None
    return Case(sizes, case.dtype, case.device, case.seed, case.scale)


# --------------------------------------------------------------------------------------------------------
# Many parameters


def formulas_from_namespace(namespace: Mapping[str, Any], parameters: Sequence[str]) -> dict[str, Formula | None]:
    """The submission convention: ``grad_<name>`` functions, or one ``gradients(...)`` returning a mapping."""
    out: dict[str, Formula | None] = {}
    combined = namespace.get("gradients")
    for name in parameters:
        single = namespace.get(f"grad_{name}")
        if callable(single):
            out[name] = single
        elif callable(combined):
            out[name] = _from_mapping(combined, name)
        else:
            out[name] = None
    return out


def _from_mapping(function: Callable[..., Any], key: str) -> Formula:
    def call(*args: Tensor, **hyper: Any) -> object:
        result = function(*args, **hyper)
        if not isinstance(result, Mapping):
            raise SubmissionFailure("error", f"gradients(...) returned {type(result).__name__}, not a mapping")
        if key not in result:
            raise SubmissionFailure("missing", f"gradients(...) returned no {key!r} (keys: {sorted(result)})")
        return result[key]

    return call


def check_formulas(
    formulas: Mapping[str, Formula | None] | Callable[..., Mapping[str, Any]],
    *,
    settings: CheckSettings | None = None,
    parameters: Sequence[str] | None = None,
    isolated: bool = False,
    on_result: Callable[[ParameterResult], None] | None = None,
    **overrides: Any,
) -> CheckResult:
    """Property-check gradient formulas over Hypothesis-drawn cases; return the verdict per parameter.

    ``formulas`` maps parameter names (``W1, b1, W2, b2`` for the seed) to callables taking the
    assignment's arguments (``X, Y, W1, b1, W2, b2``) and returning a tensor or numpy array; or it is one
    callable returning a mapping of all of them. Keyword ``overrides`` replace fields of ``settings``
    (``check_formulas(f, max_examples=500, seed=3)``).

    In-process formulas receive fresh copies of their inputs, and in-place changes or exceptions are
    failures of that parameter; ``isolated=True`` is for callables that already do this (the gate's worker
    proxies).
    """
    settings = replace(settings or CheckSettings(), **overrides)
    assignment = get_assignment(settings.assignment)
    names = list(parameters or assignment.parameters)
    if callable(formulas) and not isinstance(formulas, Mapping):
        formulas = {name: _from_mapping(formulas, name) for name in names}
    unknown = [name for name in formulas if name not in assignment.parameters]
    if unknown:
        raise InvalidArgument(f"formulas for unknown parameters {unknown}; {assignment.name} has "
                              f"{list(assignment.parameters)}")
    cache = _ReferenceCache(assignment)
    results: dict[str, ParameterResult] = {}
    for name in names:
        formula = formulas.get(name)
        if formula is not None and not isolated:
            formula = _guarded(formula, f"grad_{name}", assignment.arguments)
        result = check_parameter(name, formula, settings=settings, assignment=assignment, cache=cache)
        results[name] = result
        if on_result is not None:
            on_result(result)
    return CheckResult(assignment.name, settings, results)
