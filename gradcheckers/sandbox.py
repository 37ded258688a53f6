"""Running a submission in its own process, and getting numbers back from it without trusting it.

The trust boundary is here. A submission's code only ever runs in a worker process (see ``_worker.py``),
forked from a server that has already imported torch (``_forkserver.py``), so a worker starts in
milliseconds, and confines itself before it runs any of it (``confine.py``). What comes back over a worker's
socket is a small JSON header and raw array bytes (``_wire.py``); this side checks every field against what it
asked for and rebuilds arrays itself, and words failures for the student (``_replies.py``). Nothing the worker
sends is unpickled, and anything malformed is treated as a crash of the worker. Time is limited here (a
wall-clock deadline per call, then SIGKILL); memory, CPU time and file size are limited in the worker with
rlimits; output goes to a file of which only a bounded prefix is ever read.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from gradcheckers import _forkserver, confine
from gradcheckers import _wire as wire
from gradcheckers._forkserver import abandon_servers as abandon_server  # noqa: F401  (cli leaves by os._exit)
from gradcheckers._forkserver import server as _server  # noqa: F401  (tests reach the server through here)
from gradcheckers._replies import Replies, death, forbidden_message
from gradcheckers.errors import InvalidArgument, LoadError, SubmissionFailure
from gradcheckers.limits import ISOLATION_LEVELS, Limits
from gradcheckers.submission import CELL_SECONDS, SubmissionSource, load_error

__all__ = ["ISOLATION_LEVELS", "Limits", "Worker", "prestart"]

_T = TypeVar("_T")

# Largest file a worker may write (its captured output included); past it writes fail with an OSError.
_FILE_BYTES = 1 << 30


def prestart(*, numpy: bool = False) -> None:
    """Start the fork server now, without waiting for it: its torch import (seconds) then overlaps with the
    caller's own imports instead of following them in the first :meth:`Worker.start`."""
    _forkserver.server(_mode(numpy))


def _mode(numpy: bool) -> str:
    return "numpy" if numpy else "torch"


class Worker:
    """One submission, loaded in its own process, whose functions can be called with numpy arrays.

    Not thread-safe: use one Worker per thread. Workers in different threads may share the fork server.
    """

    def __init__(self, source: SubmissionSource, limits: Limits = Limits()) -> None:
        if not isinstance(source, SubmissionSource):
            raise InvalidArgument(f"source={source!r}: expected a SubmissionSource (see load_source)")
        if not isinstance(limits, Limits):
            raise InvalidArgument(f"limits={limits!r}: expected a Limits")
        self._source = source
        self._limits = limits
        self._replies = Replies(source, limits)
        self._state = _State()
        self._finalizer = weakref.finalize(self, self._state.release)
        self._defined: frozenset[str] = frozenset()
        self._started = False
        self._closed = False
        self._cuda = False
        self._final_output: str | None = None
        self._isolation: dict[str, str] = {}
        self._cell_notes: tuple[str, ...] = ()
        self.isolation_seconds = math.nan  # how long the latest worker took to confine itself (as it says)
        self._retrying = False  # calling again after a SIGKILL from outside (issue 12)

    def __enter__(self) -> Worker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def defined(self) -> frozenset[str]:
        """Names of the top-level callables the submission defined (empty before :meth:`start`)."""
        return self._defined

    @property
    def isolation(self) -> dict[str, str]:
        """What each confinement layer achieved in the latest worker (see ``confine.LAYERS``), as the worker's
        own code reported it before the submission ran; empty before :meth:`start`."""
        return dict(self._isolation)

    @property
    def cell_notes(self) -> tuple[str, ...]:
        """The notebook cells the latest load stopped (a refused call, an exception, the time budget), one
        sentence each, worded here from the worker's facts: nothing the submission prints can add to them."""
        return self._cell_notes

    @property
    def pid(self) -> int | None:
        """The current worker process's id, or None while there is none (before start, after a crash)."""
        child = self._state.child
        return child.pid if child is not None else None

    @property
    def output(self) -> str:
        """What the submission printed so far (stdout and stderr), at most ``output_limit`` bytes of it."""
        if self._final_output is not None:
            return self._final_output
        if self._state.tmpdir is None:
            return ""
        return _forkserver.read_output(Path(self._state.tmpdir, "output.txt"), self._limits.output_limit)

    def start(self) -> None:
        """Start a worker and run the submission's top-level code in it; raises LoadError when that fails.

        The LoadError has a ``reason`` attribute: "error", "exit", "crash", "timeout", "memory", "forbidden" or
        "internal" (the worker could not be started at all).
        """
        if self._closed:
            raise RuntimeError("this Worker is closed: create a new Worker to run the submission again")
        if self._state.child is not None:
            return
        if self._state.tmpdir is None:
            self._state.tmpdir = tempfile.mkdtemp(prefix="gradcheckers-worker-")
            # Traversable, not readable: a worker running as its own user reaches its `work` directory by its
            # absolute path (HOME, TMPDIR) and nothing else here (its output file is opened for it).
            os.chmod(self._state.tmpdir, 0o711)
            os.mkdir(os.path.join(self._state.tmpdir, "work"))
        self._defined = self._spawn()
        self._started = True

    def call(
        self, function: str, args: Sequence[np.ndarray], *, key: str | None = None, device: str = "cpu",
        kwargs: Mapping[str, int | float | str | bool] | None = None,
    ) -> np.ndarray:
        """``function(*args)`` in the worker, the arguments as torch tensors on ``device``; the result as an array.

        With ``key``, the function returns a mapping and the result is ``mapping[key]``. Raises
        SubmissionFailure when the submission is at fault (see its ``reason``).
        """
        if self._closed:
            raise RuntimeError("this Worker is closed: create a new Worker to call the submission again")
        if not self._started:
            raise RuntimeError("Worker.call() needs a started worker: call start() first (or use `with Worker(…)`)")
        if not isinstance(function, str):
            raise InvalidArgument(f"function={function!r}: expected the function's name as a str")
        if key is not None and not isinstance(key, str):
            raise InvalidArgument(f"key={key!r}: expected a str or None")
        if not isinstance(device, str):
            raise InvalidArgument(f"device={device!r}: expected a str such as 'cpu' or 'cuda'")
        arrays = [wire.wire_array(array, index) for index, array in enumerate(args)]
        if device.startswith("cuda") and not self._cuda:
            import torch  # here only: the parent needs torch for nothing else

            if not torch.cuda.is_available():
                raise InvalidArgument(f"device={device!r}: CUDA is not available on this machine")
            # CUDA must start before the worker limits its address space, so this needs a new worker.
            self._cuda = True
            self._kill()
        if self._state.child is None:
            self._respawn()
        child = self._state.child
        assert child is not None
        request = {
            "op": "call",
            "function": function,
            "key": key,
            "device": device,
            # An assignment's hyperparameters (stride, pad, ...): plain JSON values, passed as keywords.
            "kwargs": _plain_kwargs(kwargs),
            "args": [{"dtype": wire.DTYPE_NAMES[a.dtype], "shape": list(a.shape)} for a in arrays],
        }
        deadline = time.monotonic() + self._limits.call_timeout
        try:
            wire.send(child.sock, request, [a.reshape(-1).view(np.uint8).data for a in arrays], deadline)
            reply, payload = wire.receive(child.sock, deadline, wire.max_result_bytes(arrays))
            alarm = child.alarm()
            if alarm is not None and reply.get("kind") != "forbidden":  # the record was emptied: say so anyway
                raise SubmissionFailure("forbidden", f"{function}(): {forbidden_message(alarm, '')}")
            return self._replies.result(function, key, device, reply, payload)
        except wire.Timeout:
            self._kill()
            raise SubmissionFailure(
                "timeout",
                f"{function}() did not return within {self._limits.call_timeout:g} s and was stopped: "
                "look for a loop that never ends or work that grows too fast with the input size",
            ) from None
        except wire.Gone:
            facts = self._kill()
            if self._killed_from_outside(facts):
                return self._once_more(lambda: self.call(function, args, key=key, device=device, kwargs=kwargs))
            raise death(
                f"{function}()", facts, self._limits, "a gradient function must return its result, not end the process"
            ) from None
        except wire.Garbled as exc:
            self._kill()
            raise SubmissionFailure(
                "error",
                f"{function}() left the worker sending a malformed reply ({exc}), so its result cannot be "
                "trusted: the submission must not write to the worker's own files or sockets",
            ) from None

    def close(self) -> None:
        """Stop the worker and remove its temporary directory. Idempotent; ``output`` stays readable."""
        if self._closed:
            return
        self._final_output = self.output
        self._closed = True
        self._finalizer()

    # --- internals -------------------------------------------------------------------------------------

    def _spawn(self) -> frozenset[str]:
        """Fork a worker and load the submission in it; raises LoadError."""
        tmpdir = self._state.tmpdir
        assert tmpdir is not None
        workdir = os.path.join(tmpdir, "work")
        config = {
            "workdir": workdir,
            "output": os.path.join(tmpdir, "output.txt"),
            "env": _forkserver.scrubbed_env(workdir),
            "filename": self._source.filename,
            "cuda": self._cuda,
            "allow_autograd": self._limits.allow_autograd,
            "numpy": self._limits.numpy,
            "limits": {
                "memory_mb": self._limits.memory_mb,
                "cpu_seconds": self._limits.cpu_seconds,
                "file_bytes": _FILE_BYTES,
            },
        }
        self._state.child = child = _forkserver.fork(config, _mode(self._limits.numpy))
        sock = child.sock
        path = self._source.path
        deadline = time.monotonic() + self._limits.load_timeout
        try:
            confined = wire.receive(sock, deadline, 0)[0]
            self._isolation = wire.isolation_record(confined)
            seconds = confined.get("seconds")
            self.isolation_seconds = float(seconds) if isinstance(seconds, (int, float)) else math.nan
            self._enforce_isolation()
            code = self._source.code.encode("utf-8", "surrogatepass")
            siblings = [(name, text.encode("utf-8", "surrogatepass")) for name, text in self._source.siblings]
            header = {"op": "load", "code": len(code), "siblings": [[name, len(data)] for name, data in siblings],
                      "cells": [list(cell) for cell in self._source.run_cells], "cell_seconds": CELL_SECONDS}
            wire.send(sock, header, [code, *(data for _, data in siblings)], deadline)
            reply, _ = wire.receive(sock, deadline, 0)
            status = wire.field(reply, "status", str)
            self._cell_notes, refusals = self._replies.cell_notes(reply.get("cells", []))
            self._refuse_hidden(child.alarms(), refusals, reply)
            if status == "loaded":
                names = wire.field(reply, "defined", list)
                if not all(isinstance(name, str) for name in names):
                    raise wire.Garbled("non-text names in the list of definitions")
                self._replies.defined = frozenset(names)
                return self._replies.defined
            if status != "failed":
                raise wire.Garbled(f"unexpected status {status!r}")
            error = self._replies.load_failure(reply)
        except wire.Timeout:
            self._kill()
            advice = (
                f"its cells ran longer than that in all (each is cut off after {CELL_SECONDS:g} s, unless it catches "
                "every cut-off, e.g. with a bare `except:` in a loop): move long-running work into functions that "
                "are not called"
                if self._source.run_cells else "its top-level code must only define functions (move training "
                "loops and experiments into functions that are not called)"
            )
            raise load_error(
                f"{path} did not finish loading within {self._limits.load_timeout:g} s: {advice}", "timeout"
            ) from None
        except wire.Gone:
            facts = self._kill()
            if self._killed_from_outside(facts):
                return self._once_more(self._spawn)
            failure = death(
                f"{path}, while loading", facts, self._limits, "its top-level code must only define functions"
            )
            reason = {"timeout": "timeout"}.get(failure.reason, "exit" if facts.get("exit") is not None else "crash")
            raise load_error(failure.message, reason) from None
        except wire.Garbled as exc:
            self._kill()
            raise load_error(f"{path}: the worker sent a malformed reply while loading it ({exc})", "crash") from None
        self._kill()
        raise error

    def _killed_from_outside(self, facts: dict[str, Any]) -> bool:
        # Our own kills go through wire.Timeout: this SIGKILL came from outside (a person, the OOM killer) or from
        # the submission. It is run once more in a fresh worker; only a second one is the submission's doing.
        return facts.get("signal") == signal.SIGKILL and not self._retrying

    def _once_more(self, again: Callable[[], _T]) -> _T:
        self._retrying = True
        try:
            return again()
        finally:
            self._retrying = False

    def _refuse_hidden(self, alarms: list[str], refusals: int, reply: dict[str, Any]) -> None:
        """Every refusal the worker reported on its alarm channel while loading must be one the load's reply
        accounts for: a notebook cell it stopped (``refusals`` in all), or the failed load's own. One more means
        the submission emptied the worker's record, which fails the load as forbidden, as in a .py file."""
        if reply.get("kind") == "forbidden":
            return  # the load fails as forbidden anyway, its message saying where
        if len(alarms) > refusals:
            self._kill()
            raise load_error(f"{self._source.path}: {forbidden_message(alarms[0], '')}", "forbidden")

    def _enforce_isolation(self) -> None:
        """Under ``isolation="strict"``, refuse to run the submission in a worker missing any layer."""
        if self._limits.isolation != "strict":
            return
        missing = [f"{layer} ({self._isolation.get(layer, 'not reported')})" for layer in confine.LAYERS
                   if wire.unavailable(self._isolation.get(layer))]
        if missing:
            self._kill()
            raise load_error(
                f"--isolation strict: not grading {self._source.path}, because this machine cannot apply every "
                f"confinement layer; missing: {'; '.join(missing)}",
                "isolation",
            )

    def _respawn(self) -> None:
        """Replace a worker lost to a crash or timeout (or started without CUDA); failing to load fails the call."""
        try:
            self._defined = self._spawn()
        except LoadError as exc:
            reason = getattr(exc, "reason", "error")
            raise SubmissionFailure(
                reason if reason in ("timeout", "memory", "forbidden") else "error",
                f"the submission could not be loaded again in a fresh worker: {exc}",
            ) from None

    def _kill(self) -> dict[str, Any]:
        child, self._state.child = self._state.child, None
        return child.kill() if child is not None else {}


class _State:
    """What a Worker owns outside Python, kept apart from the Worker so a finalizer can release it."""

    def __init__(self) -> None:
        self.child: _forkserver.Child | None = None
        self.tmpdir: str | None = None

    def release(self) -> None:
        child, self.child = self.child, None
        if child is not None:
            child.kill()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


def _plain_kwargs(kwargs: Mapping[str, Any] | None) -> dict[str, int | float | str | bool]:
    plain = dict(kwargs or {})
    for name, value in plain.items():
        if not isinstance(name, str) or not isinstance(value, (int, float, str, bool)):
            raise InvalidArgument(f"kwargs[{name!r}]={value!r}: hyperparameters must be ints, floats, strings or bools")
    return plain
