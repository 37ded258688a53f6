"""Grading on a Dask cluster (``grade --scheduler ADDRESS``; the optional extra ``gradcheckers[cluster]``).

Each submission travels as a task holding its bytes and the settings (never a path), runs in the workers'
own sandbox exactly as in a local job process (:func:`gradcheckers.jobs.run_job`), and its report streams
back as soon as it is done, to be committed to the local gradebook. A worker lost mid-task is the
scheduler's to handle: it runs the task again elsewhere (``distributed.scheduler.allowed-failures``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from gradcheckers.jobs import GradeSpec, Job, run_job

__all__ = ["ClusterUnavailable", "DaskRunner"]

# Connecting to a scheduler that is up takes well under a second, even across a campus network; this bounds
# the wait for one that is not (a typo in the address) so the command fails with a message, not a hang.
_CONNECT_TIMEOUT_S = 30


class ClusterUnavailable(Exception):
    """dask.distributed is not installed, or the scheduler cannot be reached; one line says which."""


def _warm_up() -> None:
    from gradcheckers.sandbox import prestart

    prestart()  # the worker's fork server imports torch while the first task is on its way


def run_job_as_json(job: Job, spec: GradeSpec) -> bytes:
    """:func:`run_job`'s report as JSON bytes, the result of a task. Dask measures every result with
    ``dask.sizeof``, which for a dict of more than ten items samples its keys and values with the global
    ``random`` module, on the worker's event-loop thread, while the next task's Hypothesis run (in the
    worker's executor thread) checks that same global state and warns that a strategy used ``random``
    (HypothesisDeprecationWarning). Bytes are measured by their length, and travel without pickling."""
    return json.dumps(run_job(job, spec)).encode()


class DaskRunner:
    """Runs jobs on the workers of the scheduler at ``address``; same interface as ``LocalPool.run``."""

    def __init__(self, address: str, spec: GradeSpec) -> None:
        self.address = address
        self.spec = spec

    def _client(self) -> Any:
        try:
            from distributed import Client
        except ImportError:
            raise ClusterUnavailable("--scheduler needs dask.distributed: pip install 'gradcheckers[cluster]'") \
                from None
        try:
            return Client(self.address, timeout=_CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as error:
            raise ClusterUnavailable(f"cannot reach the Dask scheduler at {self.address}: {error}") from None

    def run(
        self,
        jobs: Iterable[Job],
        done: Callable[[Job, Any], bool],
        tick: Callable[[], None] | None = None,
    ) -> None:
        from distributed import as_completed

        client = self._client()
        pending: dict[str, tuple[Any, Job]] = {}
        try:
            client.run(_warm_up)

            def submit(job: Job) -> Any:
                # pure=False: a resubmitted job is a new task, never the cached result of the failed one.
                future = client.submit(run_job_as_json, job, self.spec, pure=False)
                pending[future.key] = (future, job)
                return future

            completed = as_completed([submit(job) for job in jobs], loop=client.loop)
            for future in completed:
                _, job = pending.pop(future.key)
                try:
                    result = json.loads(future.result())
                except Exception:  # KilledWorker after repeated losses, or a worker that cannot run us at all
                    result = None
                if done(job, result):
                    completed.add(submit(job))
                if tick is not None:
                    tick()
        finally:
            client.cancel([future for future, _ in pending.values()])
            client.close()
