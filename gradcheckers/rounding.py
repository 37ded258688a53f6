"""A per-element rounding model for any loss: how far a *correct* gradient may be off, measured on the loss.

Without a hand-written rounding analysis (see :mod:`gradcheckers.assignment`), a gradient used to be allowed
``256 u max|g|`` on every element. That is too tight where an element is a small difference of large terms
(a batch-norm input gradient sums to exactly 0 over the batch: every element is such a difference) and too
loose everywhere else (in float32, 6e-5 of the largest entry hides a 1% error in any element below 6e-3 of
it). What a correct computation may be off by depends on the terms that produced each element, which only
the computation knows; so we ask the computation, by stochastic arithmetic (CESTAC, Vignes 1993; Parker's
Monte Carlo arithmetic, 1997): run the same gradient again with the rounding randomised and look at how far
the results move.

Derivation. To first order, a computation in precision u returns ``g + u * sum_j c_j delta_j`` with
|delta_j| <= 1, one delta per rounding and ``c_j`` the sensitivity of the result to it (the running-error
bound of Wilkinson/Higham is ``u * sum_j |c_j|``). Cancellation makes ``sum_j |c_j|`` large against |g| and
is then what decides. Two arms estimate ``E = sum_j |c_j|`` per element, in units of u, so that one estimate
serves every dtype (the error in dtype d is about u_d E):

* **float32 arm**: autograd run in float32 on the parameters rounded to float32, and again with every rounded
  result of every operation (forward and backward) moved one ulp up or down at random (:class:`RandomRounding`),
  each compared with the float64 gradient: ``|g32 - g64| / u32`` is one draw of ``|sum_j c_j delta_j|`` (with
  the deltas of float32's roundings, random in every draw).
* **float64 arm**: the float64 gradient recomputed with every rounded float64 result moved one ulp at random,
  and again, plainly, with the parameters moved by up to NUDGE_ULPS ulps: ``|g64' - g64| / u64``, the arm that sees
  the float64 *reference's* own rounding (where float32 happens to be exact, or a loss computes in float64
  whatever its inputs: softmax(x, dtype=float64)). A moved draw that jumps (see unstable elements below) crossed a
  discontinuity in a parameter's own value and is discarded; only the randomly rounded draws decide a kink.

The draws randomise the roundings themselves. Moving the parameters alone by an ulp or more (what this model did
first, and what the float32 arm no longer does) misses a rounding whose result is too insensitive to them to
cross an ulp: it is the same in every draw (1 - tanh^2 at a saturated tanh, a cancellation
s_k (w_k - sum_i w_i s_i) at a dominant softmax entry), and the draws then repeat one lucky rounding instead of
sampling it. And it crosses discontinuities in the parameters' own values that no computation from those values
crosses (a +-1 label compared with 1, a 0/1 mask): those made whole gradients "kinked" (hinge_embedding_loss,
cosine_embedding_loss in op_db) where the finite differences, one element at a time, agree with autograd. Random
rounding of every result (Monte Carlo arithmetic, Parker 1997; CESTAC's random rounding mode) makes each delta_j
random in each draw and, in the draws that decide branches, leaves every parameter as the formula being judged
receives it.

Each draw of ``|sum_j c_j delta_j|`` is, for random deltas, of the order of ``sqrt(sum_j c_j^2)``, which is
at most ``E`` and rarely far below it when a few terms dominate (the cancelling case); the largest of
``SAMPLES`` draws per arm, times MODEL_SAFETY, stands in for E. Last, a floor: a correct formula written in
another order may round where autograd happened to be exact (a constant gradient, an exact 0), by a few
roundings of the terms it sums. Those terms are not always visible in any gradient (normalize of a 1-vector
has an exactly-0 gradient that a formula computes as dy/r - y (y.dy)/r, two terms of size |dy|/r, and
autograd, float32 or not, returns an exact 0): their size is estimated from the loss's own forward values,
as the finite differences estimate the loss's rounding (:mod:`gradcheckers.references`): a gradient is a
change of the loss per change of the parameter, so its terms are about S / |theta_i| for a loss that scales
like a power of theta_i, S the largest |value| of any intermediate of the forward pass. The floor is
FLOOR_TERMS times the tensor's largest entry, and where no draw of either arm moved at all (the terms are
invisible to the draws), times the larger of that and S / |theta_i|.

**Unstable elements.** Where float32 autograd is off by more than UNSTABLE_FRACTION of that same scale (the
larger of the tensor's largest entry and the terms' estimated size), no rounding of a smooth computation
explains it: a branch (argmax, sort, a kink, a sampled pooling window) went the other way in float32. Such
an element cannot be judged in float32 or below; it is inconclusive there, and its float32 draw is left out
of the estimate for float64 (which the float64 arm covers). Likewise where float32 overflows or gives NaN.
Where the float64 arm itself moves that far, a kink (relu at 0, abs, max of ties) lies within one rounding of a
value the computation produces: another correct float64 computation may take the other branch, and the element
cannot be judged in any dtype. (A kink at a parameter's own value, relu of an exact 0, is left to the references:
finite differences straddle it and disagree with autograd.)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from gradcheckers.evaluation import PromoteToFloat64, promote
from gradcheckers.references import autograd_gradients

__all__ = [
    "FLOOR_TERMS",
    "LEAST_THETA",
    "MODEL_SAFETY",
    "NUDGE_ULPS",
    "SAMPLES",
    "UNSTABLE_FRACTION",
    "RoundingEstimate",
    "RoundingModel",
    "estimate_rounding",
]

# Draws per arm: the unperturbed float32 run plus SAMPLES - 1 perturbed ones, and SAMPLES perturbed float64
# runs. With one dominant term a draw is about |c| (always close); with many comparable terms a draw is
# roughly normal with deviation sqrt(sum c^2), and the largest of 4 draws is below a quarter of that deviation
# with probability under (0.2)^4 = 0.0016 per arm.
SAMPLES = 4
# The largest draw stands for E = sum |c_j|: the factor covers E up to that many times the largest draw (many
# terms of mixed size, and a different summation order in the formula being judged). Measured on the corpus of
# hand-written backward passes and op_db (tests/test_verdict_corpus.py, benchmarks/opdb_sweep.py): x2 left
# false alarms in the fast corpus; x8 left 2 in the slow corpus's 13,600 cases (a float32 batch-norm dx and a
# float64 attention dq, each 1.6-1.7 times its allowance); x16 gives those a margin of 2 again. Detection
# stays within the targets (tests/test_verdict_corpus.py, tests/test_opdb_sweep.py).
MODEL_SAFETY = 16.0
# A few roundings of the largest entry (see above); in float32 this is 4 * 1 * u32 = 2.4e-7 of the largest
# entry once ROUNDING_SAFETY (4) is applied, below the 1e-6 that one 1% error in an element of 1e-4 of the
# largest entry makes.
FLOOR_TERMS = 1.0
# 2^-10 of the largest entry is 16,000 float32 ulps of it: far beyond the rounding of any smooth computation
# of a sensible size (n roundings reach n u only in the worst case), so a branch taken differently.
UNSTABLE_FRACTION = 2.0**-10

# The float64 arm also moves every parameter by up to this many ulps, in draws of their own: random rounding
# alone can land on the reference's own value again and again where the result is quantised (a group-norm dx
# that is exactly 0, computed as a difference of terms of ~100 whose rounding is either 0 or one ulp of them,
# 1.4e-14: all 4 randomly rounded draws equal to the reference in tests/test_verdict_corpus.py's slow case,
# groupnorm seed 66), while a move of the inputs changes every term. A float64 kernel's rounding can also be the
# same for every input within a few ulps (layer_norm of one feature returns 2.8e-14 for an exact 0, unchanged by
# 1-ulp moves); up to 64 ulps changes it (measured: 0, 2.8e-14, 1.1e-13 across draws). The moves also add the
# gradient's sensitivity to 64 ulps of its inputs, cond * 64 u: in float64 7e-15 cond relative, far below the
# 1e-12 of the largest entry that detection needs. Below float64 these draws count per ulp of the moves.
NUDGE_ULPS = 64
# The floor's S / |theta_i| with |theta_i| at least 2^-10 of max(1, max|theta|): a parameter element of 0
# would make it infinite. Below 1e-3 of the largest the homogeneity argument is a guess anyway, and the floor
# stays at most 1024 S / max(1, max|theta|): in float32 4 u32 1024 = 2.4e-4 of the terms there.
LEAST_THETA = 2.0**-10

_U32 = 2.0**-24
_U64 = 2.0**-53

LossFn = Callable[..., Tensor]


@dataclass(frozen=True)
class RoundingEstimate:
    """Per parameter: the rounding magnitude E in units of u (any dtype); where float32 is unstable (cannot be
    judged in float32 or below); where float64 itself is (a kink within a rounding: cannot be judged at all)."""

    rounding: dict[str, Tensor]  # for float64
    low: dict[str, Tensor]  # for float32 and below
    unstable: dict[str, Tensor]
    kinked: dict[str, Tensor]

    def for_dtype(self, dtype: torch.dtype) -> dict[str, Tensor]:
        return self.rounding if dtype == torch.float64 else self.low


class RandomRounding(TorchDispatchMode):
    """Monte Carlo arithmetic on every operation below float64: each result an operation rounded (forward or
    backward, as the dispatcher runs it) is moved one ulp up or down at random (CESTAC's random rounding).

    Moving the inputs alone leaves a rounding unsampled wherever the result is too insensitive to them to cross
    an ulp: a saturated tanh(a) in float32 moves by (1 - tanh^2) |a| u ~ 1e-3 of an ulp when a moves by one of
    its own ulps, so every draw sees autograd's one rounding of it, and 1 - tanh^2 (about 1e-3, from terms of
    size 1) then inherits the same error in every draw: a lucky rounding (torch's tanh landing within 1/10 of an
    ulp of the exact value, say) understates what another correct implementation (numpy's tanh, rounded
    elsewhere in its ulp) is off by, by the same factor (tests/test_rounding.py, the RNN step). With each rounded
    result moved by one ulp, its error against the exact value is between 1/2 and 3/2 ulp in every draw,
    independently of the others, so each draw is a draw of sum_j c_j delta_j with every delta_j of size ~u and a
    random sign.

    Only elements that were rounded move: the operation is run again on its arguments in float64, and an element
    equal to that is exact (a max, a sort, an index, a copy, a negation, a 0 or a 1 round nothing, and the
    backward of max finds its argmax again by comparing the input with the result: moving an exact result would
    take a branch no correct computation takes). Views, in-place and random operations are left alone (moving an
    in-place result could not be undone for its aliases, re-running a random one would draw other numbers); an
    operation that cannot run in float64 has every element moved."""

    def __init__(self, generator: torch.Generator, *, float64: bool = False) -> None:
        super().__init__()
        self.generator = generator
        self.float64 = float64

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func.is_view or func._schema.is_mutable or torch.Tag.nondeterministic_seeded in func.tags:
            return out
        results, spec = tree_flatten(out)
        moved = [self._rounds(t) for t in results]
        if not any(moved):
            return out
        exact: list[object] = [None] * len(results)
        if any(t.dtype != torch.float64 for t, m in zip(results, moved) if m):
            try:
                exact, exact_spec = tree_flatten(func(*tree_map(promote, args), **tree_map(promote, kwargs)))
            except Exception:
                exact, exact_spec = [], None
            if exact_spec != spec:
                exact = [None] * len(results)
        known = _values(args, kwargs) if any(t.dtype == torch.float64 for t, m in zip(results, moved) if m) else None
        return tree_unflatten([self._moved(t, e, known) if m else t for t, e, m in zip(results, exact, moved)], spec)

    def _rounds(self, t: object) -> bool:
        """Whether ``t`` is a result this mode moves: a plain dense floating tensor (below float64 unless asked;
        autograd's efficient zero tensors stand for exact zeros, and crash nextafter; subclasses have their own
        semantics)."""
        return type(t) is Tensor and t.layout == torch.strided and t.is_floating_point() and bool(t.numel()) \
            and (self.float64 or t.dtype != torch.float64) and not t._is_zerotensor()

    def _moved(self, t: Tensor, exact: object, known: Tensor | None) -> Tensor:
        if t.dtype == torch.float64:
            # No higher precision tells a float64 rounding apart: an element equal in magnitude to one of the
            # operation's own arguments (or 0) is taken as exact (what a max, sort, index, copy, clamp, relu, abs
            # or negation returns: a max norm's backward finds its element by comparing |x| with the norm, and
            # moving |x_i| of a negative x_i lost it); every other one as rounded (an exact sum such as 1 + 1
            # moves too: the estimate errs upwards).
            rounded = ~torch.isin(t.abs(), known.abs().to(t.device)) if known is not None \
                else torch.ones_like(t, dtype=torch.bool)
        elif isinstance(exact, Tensor) and exact.shape == t.shape:
            rounded = t.double() != exact
        else:
            rounded = torch.ones_like(t, dtype=torch.bool)
        # An infinity or NaN is left alone: there is no ulp to move it by (inf + (inf - inf) is NaN), and an
        # infinity a loss masks out (masked softmin) made every draw NaN and every element "kinked".
        rounded = rounded & torch.isfinite(t)
        sign = torch.randint(0, 2, t.shape, generator=self.generator).to(t.device, t.dtype) * 2 - 1
        return t + torch.where(rounded, sign * (torch.nextafter(t, torch.full_like(t, torch.inf)) - t), 0)


def _values(args: object, kwargs: object) -> Tensor:
    """Every value an operation was given, in float64: its floating tensors' elements, its numbers, and 0."""
    leaves = tree_flatten((args, kwargs))[0]
    tensors = [x.detach().reshape(-1).double().cpu() for x in leaves
               if type(x) is Tensor and x.layout == torch.strided and x.is_floating_point() and not x._is_zerotensor()]
    numbers = [float(x) for x in leaves if isinstance(x, (int, float)) and not isinstance(x, bool)]
    return torch.cat([*tensors, torch.tensor([0.0, *numbers], dtype=torch.float64)])


def _float32_draws(
    loss_fn: LossFn, args64: Mapping[str, Tensor], wrt: Sequence[str], reference: Mapping[str, Tensor],
    samples: int, generator: torch.Generator,
) -> list[dict[str, Tensor]] | None:
    """|g32 - g64| for the plain and samples - 1 randomly rounded float32 runs, or None where float32 cannot run
    (a loss that mixes its argument with float64 data it holds, say)."""
    args32 = {k: v.float() if v.is_floating_point() else v for k, v in args64.items()}
    draws = []
    for k in range(samples):
        try:
            g = _gradients(loss_fn, args32, wrt, generator if k else None, promote=False)
        except Exception:  # the user's loss in a dtype it was not written for: the float64 arm still runs
            return None
        draws.append({n: (g[n].double() - reference[n]).abs() for n in wrt})
    return draws


def _gradients(loss_fn: LossFn, args: Mapping[str, Tensor], wrt: Sequence[str], generator: torch.Generator | None,
               *, promote: bool) -> dict[str, Tensor]:
    """Autograd (in float64 with ``promote``, else in the arguments' own dtype), under random rounding when given a
    generator; a loss that does not survive the mode (an op it cannot run, control flow on perturbed values)
    falls back to plain autograd (that draw then shows no rounding, and the floor and the other arm remain)."""
    if generator is not None:
        try:
            with RandomRounding(generator, float64=promote):
                return autograd_gradients(loss_fn, args, wrt, promote=promote)
        except Exception:
            pass
    return autograd_gradients(loss_fn, args, wrt, promote=promote)


def _float64_draws(
    loss_fn: LossFn, args64: Mapping[str, Tensor], wrt: Sequence[str], reference: Mapping[str, Tensor],
    samples: int, generator: torch.Generator,
) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
    """|g64' - g64| for ``samples`` randomly rounded runs, and as many with the parameters also moved by up to
    NUDGE_ULPS ulps (see there)."""
    rounded, moved = [], []
    for _ in range(samples):
        g = _gradients(loss_fn, args64, wrt, generator, promote=True)
        rounded.append({n: (g[n] - reference[n]).abs() for n in wrt})
        args = {n: _nudged(v, NUDGE_ULPS, generator) if n in wrt else v for n, v in args64.items()}
        g = autograd_gradients(loss_fn, args, wrt)  # moved only: random rounding is the other draws
        moved.append({n: (g[n] - reference[n]).abs() for n in wrt})
    return rounded, moved


def _nudged(value: Tensor, ulps: int, generator: torch.Generator) -> Tensor:
    """``value`` with every element moved by a random whole number of its own ulps in [-ulps, ulps]."""
    steps = torch.randint(-ulps, ulps + 1, value.shape, generator=generator).to(value.device, value.dtype)
    return value + steps * (torch.nextafter(value, torch.full_like(value, torch.inf)) - value)


def estimate_rounding(
    loss_fn: LossFn,
    args: Mapping[str, Tensor],
    wrt: Sequence[str],
    reference: Mapping[str, Tensor],
    *,
    samples: int = SAMPLES,
    seed: int = 0,
) -> RoundingEstimate:
    """The rounding model of this module for the gradient of ``loss_fn(**args)`` with respect to ``wrt``.

    ``reference`` is the float64 autograd gradient at ``args`` (already computed by the caller). The result
    is on the reference's device and dtype; a NaN or infinite reference gets E = 0 there (the verdict
    treats such elements on its own)."""
    return RoundingModel(loss_fn, args, wrt, reference, samples=samples, seed=seed).full


class RoundingModel:
    """The rounding model of one loss at one point, computed as far as a verdict needs it.

    ``floor`` is what every allowance of :func:`estimate_rounding` is at least, from one forward pass: the floor
    terms alone (FLOOR_TERMS times the terms' size in float64, times the largest entry below), with nothing
    unstable or kinked. ``full`` is the model itself: ``2 * SAMPLES`` gradient runs, ``2 * SAMPLES - 1`` of them under
    :class:`RandomRounding`, which costs some ten times the references themselves (a correct variant's slow run of
    the layer pack took 6x longer with it). Every allowance grows with the estimate (``tolerance.allowed_error``,
    ``references_agree``), so a gradient that agrees everywhere under ``floor`` agrees under ``full`` too, and
    its verdict is a pass either way: the draws are needed only for a case that does not, and
    :func:`gradcheckers.compare.settled_limits` computes them only then. (Under ``full`` such a case may have
    elements called unstable or kinked, inconclusive; under ``floor`` they count as checked, which they are:
    the analytic value agrees with both references there.)"""

    def __init__(self, loss_fn: LossFn, args: Mapping[str, Tensor], wrt: Sequence[str],
                 reference: Mapping[str, Tensor], *, samples: int = SAMPLES, seed: int = 0) -> None:
        self.loss_fn, self.wrt, self.reference = loss_fn, list(wrt), reference
        self.args64 = {k: v.detach().double() if v.is_floating_point() else v for k, v in args.items()}
        self.samples, self.seed = samples, seed
        mode = PromoteToFloat64(track_scale=True)
        with torch.no_grad(), mode:
            loss_fn(**self.args64)
        self.forward = mode.scale if math.isfinite(mode.scale) else 0.0

    @functools.cached_property
    def floor(self) -> RoundingEstimate:
        rounding, low, never = {}, {}, {}
        for n in self.wrt:
            ref = self.reference[n]
            finite, largest, _, terms = _scales(ref, self.args64[n], self.forward)
            rounding[n] = torch.where(finite, FLOOR_TERMS * terms.clamp(min=largest), 0.0)
            low[n] = torch.where(finite, FLOOR_TERMS * largest, 0.0)
            never[n] = torch.zeros_like(ref, dtype=torch.bool)
        return RoundingEstimate(rounding, low, never, never)

    @functools.cached_property
    def full(self) -> RoundingEstimate:
        generator = torch.Generator().manual_seed(self.seed)
        args64, wrt, reference, samples = self.args64, self.wrt, self.reference, self.samples
        d32 = _float32_draws(self.loss_fn, args64, wrt, reference, samples, generator)
        d64 = _float64_draws(self.loss_fn, args64, wrt, reference, samples, generator)
        rounding: dict[str, Tensor] = {}
        low: dict[str, Tensor] = {}
        unstable: dict[str, Tensor] = {}
        kinked: dict[str, Tensor] = {}
        for n in wrt:
            worst64 = torch.stack([d[n] for d in d64[0]]).amax(0)
            moved64 = torch.stack([d[n] for d in d64[1]]).amax(0)
            worst32 = None if d32 is None else torch.stack([d[n] for d in d32]).amax(0)
            rounding[n], low[n], unstable[n], kinked[n] = _combined(reference[n], args64[n], self.forward, worst32,
                                                                      worst64, moved64)
        return RoundingEstimate(rounding, low, unstable, kinked)


def _scales(ref: Tensor, theta: Tensor, forward: float) -> tuple[Tensor, float, float, Tensor]:
    """Where the reference is finite, its largest finite |entry|, the scale that tells a branch from rounding, and
    per element the terms' estimated size S / |theta_i| (see the module)."""
    finite = torch.isfinite(ref)
    largest = float(ref[finite].abs().max()) if bool(finite.any()) else 0.0
    size = max(1.0, float(theta.abs().max())) if theta.numel() else 1.0
    # |theta_i| kept above LEAST_THETA of the largest so that a parameter of 0 does not make its element
    # unjudgeable.
    terms = forward / theta.abs().clamp(min=LEAST_THETA * size).to(ref.device)
    return finite, largest, max(largest, forward / size), terms


def _combined(
    ref: Tensor, theta: Tensor, forward: float, worst32: Tensor | None, worst64: Tensor, moved64: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One parameter's (rounding for float64, for float32 and below, unstable, kinked) from the largest draw of
    each arm (see the module)."""
    finite, largest, scale, terms = _scales(ref, theta, forward)
    kinked = (~torch.isfinite(worst64) | (worst64 > UNSTABLE_FRACTION * scale)) & finite
    # The moved draws count where they stay below the same threshold: beyond it the moves crossed a
    # discontinuity in a parameter's own value (a +-1 label compared with 1), which no computation from the
    # parameters as given crosses: that draw says nothing of rounding, and the element is not kinked for it.
    moved_ok = torch.isfinite(moved64) & (moved64 <= UNSTABLE_FRACTION * scale)
    e64_rounded = torch.where(kinked, 0.0, worst64) / _U64
    e64_moved = torch.where(kinked | ~moved_ok, 0.0, moved64) / _U64
    e64 = torch.maximum(e64_rounded, e64_moved)
    if worst32 is None:
        e32, bad, e32_for64 = torch.zeros_like(ref), kinked, torch.zeros_like(ref)
    else:
        bad = ((~torch.isfinite(worst32) | (worst32 > UNSTABLE_FRACTION * scale)) & finite) | kinked
        e32 = torch.where(bad, 0.0, worst32) / _U32
        # Where float32 is unstable but float64 is not kinked, float32 met a cancellation too severe for its
        # precision (1 - tanh(h)^2 at a saturated tanh: about 1e-9 from terms of size 1) rather than a branch: its
        # draw is still a measure of E for float64, which the float64 arm cannot see when autograd and the formula
        # share the rounded forward value (tests/test_layers_slow.py, the RNN step).
        e32_for64 = torch.where(bad & ~kinked & torch.isfinite(worst32), worst32 / _U32, e32)
    # The terms' estimated size only where no draw moved at all (the computation showed no rounding, so its
    # terms are invisible); elsewhere the draws measure them, and S / |theta_i| summed along a random
    # direction of 16,000 elements would swamp one element's error.
    silent = (e32 == 0) & (e64 == 0)
    if worst32 is not None:
        # Where float32 lost the element entirely (off by half its size or more: 1 - tanh(h)^2 rounds to 0 at a
        # saturated tanh), its error is capped by the element's own size and no longer measures the terms
        # that cancelled there: those are as invisible as where no draw moved.
        silent = silent | ((worst32 >= 0.5 * ref.abs()) & (worst32 > 0) & ~bad)
    floor = torch.where(silent, terms.clamp(min=largest), largest)
    # In float64 the terms' floor applies everywhere: a correct float64 formula rounds its terms once or twice
    # wherever they cancel, and 4 draws of either arm can all miss it (1 - tanh(h)^2 near saturation, where the
    # formula and autograd round the same forward value differently); at u64 it costs no detection (one 1e-4
    # error in an element of 1e-8 of the largest entry is 1e-12 of it, the floor 4 u64 S / |theta_i|).
    estimate = MODEL_SAFETY * torch.maximum(e32_for64, e64) + FLOOR_TERMS * terms.clamp(min=largest)
    # Below float64 the randomly rounded float64 draws count in full (the same E, units of u, from float64's
    # roundings), the moved ones per ulp of their moves: the part of them that is sensitivity to the inputs grows
    # with NUDGE_ULPS, and float32's own inputs are not moved.
    # Where float32 itself was exact in every draw it says nothing of a formula that rounds (normalize of one
    # feature: autograd returns an exact 0 in float32, a formula |dy|/r - |dy|/r a few float32 ulps of it):
    # there the float64 arm counts in full and the terms' floor applies.
    # ("exact": moved no more than the float64 arm did, which is float64's own rounding of the reference).
    quiet32 = e32 * _U32 <= 2 * e64 * _U64
    low = torch.where(quiet32, MODEL_SAFETY * e64 + FLOOR_TERMS * terms.clamp(min=largest),
                      MODEL_SAFETY * torch.maximum(e32, torch.maximum(e64_rounded, e64_moved / NUDGE_ULPS))
                      + FLOOR_TERMS * floor)
    return torch.where(finite, estimate, 0.0), torch.where(finite, low, 0.0), bad, kinked
