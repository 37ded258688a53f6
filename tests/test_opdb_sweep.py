"""The op_db sweep (benchmarks/opdb_sweep.py): no false alarm outside the one known forward-mode-AD discrepancy, the
alternatives shown wrong counted apart, and the detection targets of issue 9 on the elements that can be judged."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

# The one failure not shown wrong by the sweep's own evidence: logcumsumexp of a one-element input is the identity
# (its float64 value is bit-exact), so the exact gradient is the weight w, which autograd returns bit-exactly;
# forward-mode AD is ~720 ulps off it, below what Richardson's differences resolve (~1e-13 of 0.8).
KNOWN = ("logcumsumexp sample 2 float64",)
# Forward-mode AD shown wrong (NaN where autograd and Richardson agree on a finite derivative, or off from both by
# far more than they disagree), measured on the full sweep 2026-12-01: __rpow__ x2, special.entr x2,
# triangular_solve x4, logcumsumexp sample 1 float64.
WRONG_ALTERNATIVES = ("__rpow__", "special.entr", "triangular_solve", "logcumsumexp")


def _check(tally) -> None:  # type: ignore[no-untyped-def]
    print(f"\n{tally.judged} samples judged, false alarms: {tally.false_alarms}, "
          f"alternatives shown wrong: {len(tally.wrong_alternatives)}")
    assert not [line for line in tally.false_alarms if not line.startswith(KNOWN)]
    assert all(line.split()[0] in WRONG_ALTERNATIVES for line in tally.wrong_alternatives)
    for dtype, edges in (("float64", (1e-2, 1e-4, 1e-8)), ("float32", (1e-2, 1e-4))):
        tried = sum(tally.tried[(dtype, e)] - tally.uncaught_inconclusive[(dtype, e)] for e in edges)
        caught = sum(tally.caught[(dtype, e)] for e in edges)
        assert caught >= (0.999 if dtype == "float64" else 0.95) * tried, (dtype, caught, tried)


def test_a_subset_of_op_db_has_no_unexplained_false_alarm_and_meets_the_detection_targets() -> None:
    pytest.importorskip("expecttest")
    from benchmarks.opdb_sweep import differentiable_ops, sweep

    tally = sweep(differentiable_ops(every=12))
    assert tally.judged > 50
    _check(tally)


def test_the_forward_mode_discrepancies_are_detections_with_evidence_not_false_alarms() -> None:
    pytest.importorskip("expecttest")
    from benchmarks.opdb_sweep import differentiable_ops, sweep

    tally = sweep(differentiable_ops(names=("__rpow__", "special.entr", "triangular_solve", "logcumsumexp",
                                            "softmax.with_dtype")))
    _check(tally)
    assert len(tally.wrong_alternatives) >= 8  # 9 when run alone (the weights depend on the operators' order)
    assert all("no second correct alternative in float64" in line or "rounded to float32: " in line
               for line in tally.wrong_alternatives)
