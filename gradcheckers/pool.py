"""A pool of job processes that survives losing one: the dead process is replaced, its job handed back.

``concurrent.futures.ProcessPoolExecutor`` breaks as a whole when one of its processes dies, and cannot say
which job was running there; here each process has its own pipe, so the caller learns exactly which job was
lost and decides whether to run it again. Every wait is short, so Ctrl-C is honoured at once, and leaving
the pool (normally or not) kills every job process, whose fork servers then take their workers with them.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection, wait
from typing import Any

__all__ = ["LocalPool", "serve"]

# How often the loop wakes up without news (for progress lines); Ctrl-C does not wait for it.
_TICK_S = 0.5


def serve(connection: Connection, function: Callable[..., Any], initializer: Callable[[], None] | None) -> None:
    """The loop of a job process: ``function(job, *extra)`` for each ``(job, extra)`` received, its result sent
    back, until the parent hangs up."""
    # The terminal's Ctrl-C reaches every process of its group: the parent handles it and kills us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer()
    while True:
        try:
            job, extra = connection.recv()
        except (EOFError, OSError):  # the parent is gone: nothing left to do
            return
        result = function(job, *extra)
        try:
            connection.send(result)
        except OSError:  # the parent is gone (killed): the result is lost with it, and resuming redoes it
            return


class _Process:
    def __init__(self, context: Any, function: Callable[..., Any], initializer: Callable[[], None] | None) -> None:
        ours, theirs = context.Pipe()
        self.connection: Connection = ours
        self.process = context.Process(target=serve, args=(theirs, function, initializer), daemon=True)
        self.process.start()
        theirs.close()
        self.job: Any = None

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.connection.close()


class LocalPool:
    """``processes`` job processes running ``function(job, *extra)``; see :meth:`run`."""

    def __init__(
        self,
        processes: int,
        function: Callable[..., Any],
        *,
        extra: tuple[Any, ...] = (),
        initializer: Callable[[], None] | None = None,
    ) -> None:
        self.processes = processes
        self.function = function
        self.extra = extra
        self.initializer = initializer
        # forkserver: job processes start clean (no inherited threads or locks) but from a warm template.
        self.context = multiprocessing.get_context("forkserver")

    def run(
        self,
        jobs: Iterable[Any],
        done: Callable[[Any, Any], bool],
        tick: Callable[[], None] | None = None,
    ) -> None:
        """Run every job; ``done(job, result)`` for each, ``result`` None when its process died.

        ``done`` returns True to have the job run again. ``tick`` is called about every half second.
        """
        queue = deque(jobs)
        workers: list[_Process] = []
        try:
            for _ in range(min(self.processes, len(queue))):
                workers.append(_Process(self.context, self.function, self.initializer))
            for worker in workers:
                self._assign(worker, queue)
            while any(w.job is not None for w in workers):
                waiting: dict[Any, _Process] = {}
                for worker in workers:
                    if worker.job is not None:
                        waiting[worker.connection] = worker
                        waiting[worker.process.sentinel] = worker
                ready = wait(list(waiting), timeout=_TICK_S)
                for worker in {id(waiting[r]): waiting[r] for r in ready}.values():
                    self._collect(worker, workers, queue, done)
                if tick is not None:
                    tick()
        finally:
            for worker in workers:
                worker.kill()

    def _assign(self, worker: _Process, queue: deque[Any]) -> None:
        worker.job = queue.popleft() if queue else None
        if worker.job is not None:
            try:
                worker.connection.send((worker.job, self.extra))
            except OSError:  # it died just now: its sentinel reports the job as lost on the next wait
                pass

    def _collect(self, worker: _Process, workers: list[_Process], queue: deque[Any],
                 done: Callable[[Any, Any], bool]) -> None:
        job, result, lost = worker.job, None, False
        try:
            if worker.connection.poll():
                result = worker.connection.recv()
            else:
                lost = True
        except (EOFError, OSError):
            lost = True
        if done(job, result):
            queue.appendleft(job)
        if lost or not worker.process.is_alive():  # replace a dead process before handing out more work
            worker.kill()
            index = workers.index(worker)
            workers[index] = worker = _Process(self.context, self.function, self.initializer)
        self._assign(worker, queue)
