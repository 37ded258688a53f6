"""gradcheckers: prove hand-derived gradients right or wrong.

Analytic gradients are checked against autograd and finite differences (both in float64) over
Hypothesis-drawn shapes, batch sizes, seeds, dtypes and devices, and a failure is reported as its smallest
counterexample. The pytest plugin, the course gate and these helpers all share one verdict.

The public names are imported on first use (PEP 562): pytest loads ``gradcheckers.plugin`` in every run of
every project that has the package installed, and that must not cost a torch import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Assignment": "gradcheckers.assignment",
    "Case": "gradcheckers.assignment",
    "Sizes": "gradcheckers.assignment",
    "Hyperparameter": "gradcheckers.assignment",
    "BackwardResult": "gradcheckers.backward",
    "Input": "gradcheckers.backward",
    "Layer": "gradcheckers.layer",
    "assert_backward": "gradcheckers.backward",
    "check_backward": "gradcheckers.backward",
    "labels": "gradcheckers.backward",
    "mask": "gradcheckers.backward",
    "positive": "gradcheckers.backward",
    "available_assignments": "gradcheckers.assignment",
    "get_assignment": "gradcheckers.assignment",
    "AgreementResult": "gradcheckers.compare",
    "InconclusiveWarning": "gradcheckers.compare",
    "ParameterAgreement": "gradcheckers.compare",
    "Verdict": "gradcheckers.compare",
    "assert_gradients_agree": "gradcheckers.compare",
    "GradcheckersError": "gradcheckers.errors",
    "GradientMismatchError": "gradcheckers.errors",
    "InvalidArgument": "gradcheckers.errors",
    "LoadError": "gradcheckers.errors",
    "SubmissionFailure": "gradcheckers.errors",
    "CheckResult": "gradcheckers.property",
    "CheckSettings": "gradcheckers.property",
    "ParameterResult": "gradcheckers.property",
    "check_formulas": "gradcheckers.property",
    "formulas_from_namespace": "gradcheckers.property",
    "References": "gradcheckers.references",
    "autograd_gradients": "gradcheckers.references",
    "compute_references": "gradcheckers.references",
    "complex_step_gradients": "gradcheckers.complex_step",
    "with_complex_step": "gradcheckers.complex_step",
    "finite_difference_gradients": "gradcheckers.references",
    "Limits": "gradcheckers.limits",
    "SubmissionReport": "gradcheckers.session",
    "check_submission": "gradcheckers.session",
    "Tolerance": "gradcheckers.tolerance",
}

__all__ = [
    "AgreementResult",
    "Assignment",
    "BackwardResult",
    "Case",
    "CheckResult",
    "CheckSettings",
    "GradcheckersError",
    "GradientMismatchError",
    "Hyperparameter",
    "InconclusiveWarning",
    "Input",
    "InvalidArgument",
    "Layer",
    "Limits",
    "LoadError",
    "ParameterAgreement",
    "ParameterResult",
    "References",
    "Sizes",
    "SubmissionFailure",
    "SubmissionReport",
    "Tolerance",
    "Verdict",
    "__version__",
    "assert_backward",
    "assert_gradients_agree",
    "autograd_gradients",
    "available_assignments",
    "check_backward",
    "check_formulas",
    "check_submission",
    "complex_step_gradients",
    "compute_references",
    "finite_difference_gradients",
    "formulas_from_namespace",
    "get_assignment",
    "labels",
    "mask",
    "positive",
    "with_complex_step",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gradcheckers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from gradcheckers.assignment import Assignment, Case, Hyperparameter, Sizes, available_assignments, get_assignment
    from gradcheckers.backward import (
        BackwardResult,
        Input,
        assert_backward,
        check_backward,
        labels,
        mask,
        positive,
    )
    from gradcheckers.compare import (
        AgreementResult,
        InconclusiveWarning,
        ParameterAgreement,
        Verdict,
        assert_gradients_agree,
    )
    from gradcheckers.complex_step import complex_step_gradients, with_complex_step
    from gradcheckers.errors import (
        GradcheckersError,
        GradientMismatchError,
        InvalidArgument,
        LoadError,
        SubmissionFailure,
    )
    from gradcheckers.layer import Layer
    from gradcheckers.limits import Limits
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
    from gradcheckers.session import SubmissionReport, check_submission
    from gradcheckers.tolerance import Tolerance
