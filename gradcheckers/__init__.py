"""gradcheckers: prove hand-derived gradients right or wrong.

Analytic gradients are checked against autograd and finite differences (both in float64) over
Hypothesis-drawn shapes, batch sizes, seeds, dtypes and devices, and a failure is reported as its smallest
counterexample. The pytest plugin, the course gate and these helpers all share one verdict.
"""

from __future__ import annotations

from gradcheckers.assignment import Assignment, Case, Sizes, available_assignments, get_assignment
from gradcheckers.compare import InconclusiveWarning, Verdict, assert_gradients_agree
from gradcheckers.errors import (
    GradcheckersError,
    GradientMismatchError,
    InvalidArgument,
    LoadError,
    SubmissionFailure,
)
from gradcheckers.property import (
    CheckResult,
    CheckSettings,
    ParameterResult,
    check_formulas,
    formulas_from_namespace,
)
from gradcheckers.references import (
    References,
    autograd_gradients,
    compute_references,
    finite_difference_gradients,
)
from gradcheckers.tolerance import Tolerance

__version__ = "0.1.0"

__all__ = [
    "Assignment",
    "Case",
    "CheckResult",
    "CheckSettings",
    "GradcheckersError",
    "GradientMismatchError",
    "InconclusiveWarning",
    "InvalidArgument",
    "LoadError",
    "ParameterResult",
    "References",
    "Sizes",
    "SubmissionFailure",
    "Tolerance",
    "Verdict",
    "__version__",
    "assert_gradients_agree",
    "autograd_gradients",
    "available_assignments",
    "check_formulas",
    "compute_references",
    "finite_difference_gradients",
    "formulas_from_namespace",
    "get_assignment",
]
