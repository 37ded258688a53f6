"""Grading on a Dask cluster (``grade --scheduler ADDRESS``; the optional extra ``gradcheckers[cluster]``).

Each submission travels as a task holding its bytes and the settings (never a path), runs in a job process of
the Dask worker's own, exactly as in a local job process (:func:`gradcheckers.jobs.run_job`), and its report
streams back as soon as it is done, to be committed to the local gradebook. A worker lost mid-task is the
scheduler's to handle: it runs the task again elsewhere (``distributed.scheduler.allowed-failures``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any

from gradcheckers.jobs import GradeSpec, Job, run_job
from gradcheckers.pool import serve

__all__ = ["ClusterUnavailable", "DaskRunner", "JobProcessLost", "run_task"]

# Connecting to a scheduler that is up takes well under a second, even across a campus network; this bounds
# the wait for one that is not (a typo in the address) so the command fails with a message, not a hang.
_CONNECT_TIMEOUT_S = 30


class ClusterUnavailable(Exception):
    """dask.distributed is not installed, or the scheduler cannot be reached; one line says which."""


def _prestart() -> None:
    from gradcheckers.sandbox import prestart

    prestart()  # the job process's fork server imports torch while the first task is on its way


class JobProcessLost(Exception):
    """A Dask worker's job process died while it ran a task (killed, out of memory): the task runs again."""


class _JobProcess:
    """A job process of a Dask worker's: a fresh interpreter (``subprocess``, since a Dask worker is a daemonic
    process, which ``multiprocessing`` does not let have children) serving jobs on a socket, one at a time."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        command = "import sys; from gradcheckers.cluster import _serve_jobs; _serve_jobs(int(sys.argv[1]))"
        self.process = subprocess.Popen([sys.executable, "-c", command, str(theirs.fileno())],
                                        pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        self.connection = Connection(ours.detach())

    def call(self, job: Job, spec: GradeSpec) -> bytes:
        try:
            self.connection.send((job, (spec,)))
            return bytes(self.connection.recv())
        except (EOFError, OSError):
            self.process.kill()
            self.process.wait()
            self.connection.close()
            raise JobProcessLost(f"the job process (pid {self.process.pid}) died while it ran a job") from None


def _serve_jobs(fd: int) -> None:
    serve(Connection(fd), run_job_as_json, _prestart)


# The job processes of this Dask worker that are not running a task (one per task running at once; list.pop and
# list.append are atomic, so the worker's threads share it without a lock).
_IDLE: list[_JobProcess] = []


def _warm_up() -> None:
    if not _IDLE:
        _IDLE.append(_JobProcess())


def run_job_as_json(job: Job, spec: GradeSpec) -> bytes:
    """:func:`run_job`'s report as JSON bytes: Dask measures a task's result with ``dask.sizeof``, which samples
    a dict's items with the global ``random``; bytes are measured by their length."""
    return json.dumps(run_job(job, spec)).encode()


def run_task(job: Job, spec: GradeSpec) -> bytes:
    """The Dask task: :func:`run_job_as_json` in a job process of this worker's, never in the worker itself.

    A Dask worker's event loop draws from the global ``random`` module while tasks run in its other threads
    (``dask.sizeof`` samples each message it sends, its heartbeat every second included), and Hypothesis,
    which seeds and restores that global state around every example it runs, sees it move and warns that a
    strategy used ``random`` (HypothesisDeprecationWarning). A job process has no such thread, as ``grade``'s
    local job processes have none. A job process that dies raises JobProcessLost, and the task is run again.
    """
    try:
        process = _IDLE.pop()
    except IndexError:
        process = _JobProcess()
    result = process.call(job, spec)  # raises JobProcessLost when it died, and then it is not reused
    _IDLE.append(process)
    return result


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
                future = client.submit(run_task, job, self.spec, pure=False)
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
