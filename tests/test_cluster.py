"""gradcheckers.cluster without a cluster: what a task hands back to Dask (the LocalCluster runs of ``grade`` are in
test_grade_robust.py)."""

from __future__ import annotations

import json
import random

import pytest

from gradcheckers.cluster import run_job_as_json
from gradcheckers.jobs import GradeSpec, Job, run_job
from gradcheckers.property import CheckSettings
from gradcheckers.sandbox import Limits


def test_a_task_result_is_measured_without_the_global_random() -> None:
    # Dask measures each task's result on the worker's event-loop thread while the next task's Hypothesis run
    # watches the global `random` state in another thread: a result that moves that state makes Hypothesis warn
    # that a strategy used `random`.
    sizeof = pytest.importorskip("dask.sizeof").sizeof
    job, spec = Job("s0", "s0.py", None, problem="no .py or .ipynb file"), GradeSpec(CheckSettings(), Limits())
    state = random.getstate()
    sizeof(run_job(job, spec))  # a report as a dict: dask samples its keys and values with the global random
    assert random.getstate() != state
    state = random.getstate()
    encoded = run_job_as_json(job, spec)
    sizeof(encoded)
    assert random.getstate() == state
    assert json.loads(encoded)["load_error"] == "no .py or .ipynb file"  # the same report, as JSON
