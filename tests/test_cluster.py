"""gradcheckers.cluster without a cluster: what a task hands back to Dask (the LocalCluster runs of ``grade`` are in
test_grade_robust.py)."""

from __future__ import annotations

import json
import random
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from gradcheckers import cluster
from gradcheckers.cluster import run_job_as_json, run_task
from gradcheckers.jobs import GradeSpec, Job, run_job
from gradcheckers.property import CheckSettings
from gradcheckers.sandbox import Limits

T = TypeVar("T")


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


CORRECT = (Path(__file__).parent / "submissions" / "correct.py").read_bytes()


def _while_another_thread_draws(action: Callable[[], T]) -> T:
    """``action()`` while another thread draws from the global ``random``, as a Dask worker's event loop does
    (``dask.sizeof`` samples every message it sends, its heartbeat's included)."""
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.is_set():
            random.sample(range(100), 20)

    thread = threading.Thread(target=heartbeat)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: a draw of a few microseconds then meets the other thread
    thread.start()
    try:
        return action()
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)


def test_a_task_runs_its_hypothesis_run_in_a_job_process_with_no_other_thread(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Run here, in this process, the same job may (it is a race) make Hypothesis warn; the LocalCluster test
    # of test_grade_robust.py meets the same race against a real Dask worker's heartbeat.
    job = Job("s0", "correct.py", CORRECT)
    spec = GradeSpec(CheckSettings(max_examples=10, dtypes=("float64",)), Limits(call_timeout=30))
    try:
        assert json.loads(_while_another_thread_draws(lambda: run_task(job, spec)))["passed"]
    finally:
        for process in cluster._IDLE:  # a job process ends when its socket closes
            process.connection.close()
            process.process.wait(timeout=60)
        cluster._IDLE.clear()
    assert "HypothesisDeprecationWarning" not in capfd.readouterr().err  # the job process writes to our stderr
