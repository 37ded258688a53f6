"""The op_db sweep (benchmarks/opdb_sweep.py) on a subset of operators: no false alarm outside the known
forward-mode-AD discrepancies, and the detection targets of issue 9 on the elements that can be judged."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

# Operators whose forward-mode AD itself differs from autograd and finite differences (which agree): NaN
# where the gradient is finite (__rpow__, special.entr), another convention for the unused triangle
# (triangular_solve), 450 ulps on a scalar whose derivative is exactly 1 (logcumsumexp), and two elements of
# multi_head_attention_forward and softmax.with_dtype not yet explained (issue 9's closing note).
KNOWN = ("__rpow__", "special.entr", "triangular_solve", "logcumsumexp", "multi_head_attention_forward",
         "softmax.with_dtype")


def test_a_subset_of_op_db_has_no_unexplained_false_alarm_and_meets_the_detection_targets() -> None:
    pytest.importorskip("expecttest")
    from benchmarks.opdb_sweep import differentiable_ops, sweep

    tally = sweep(differentiable_ops(every=12))
    print(f"\n{tally.judged} samples judged, false alarms: {tally.false_alarms}")
    assert tally.judged > 50
    unexplained = [line for line in tally.false_alarms if not any(line.startswith(k) or f".{k}" in line.split()[0]
                                                                   for k in KNOWN)]
    assert not unexplained
    for dtype, edges in (("float64", (1e-2, 1e-4, 1e-8)), ("float32", (1e-2, 1e-4))):
        tried = sum(tally.tried[(dtype, e)] - tally.uncaught_inconclusive[(dtype, e)] for e in edges)
        caught = sum(tally.caught[(dtype, e)] for e in edges)
        assert caught >= (0.999 if dtype == "float64" else 0.95) * tried, (dtype, caught, tried)
