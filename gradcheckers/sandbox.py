"""Running a submission in its own process, and getting numbers back from it without trusting it.

The trust boundary is here. A submission's code only ever runs in a worker process (see ``_worker.py``),
forked from a server that has already imported torch, so a worker starts in milliseconds. What comes back
over a worker's socket is a small JSON header and raw array bytes; this side checks every field against what
it asked for and rebuilds arrays itself. Nothing the worker sends is unpickled, and anything malformed is
treated as a crash of the worker. Time is limited here (a wall-clock deadline per call, then SIGKILL); memory,
CPU time and file size are limited in the worker with rlimits; output goes to a file of which only a bounded
prefix is ever read.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradcheckers import _worker
from gradcheckers.errors import InvalidArgument, LoadError, SubmissionFailure
from gradcheckers.submission import SubmissionSource, load_error

__all__ = ["Limits", "Worker", "prestart"]

# Importing torch in a fresh interpreter takes seconds on a cold disk; this is only a guard against a server
# that will never answer.
_SERVER_START_TIMEOUT = 120.0
# The server answers fork and reap requests at once; waiting longer means it is wedged.
_CONTROL_TIMEOUT = 30.0
# Largest file a worker may write (its captured output included); past it writes fail with an OSError.
_FILE_BYTES = 1 << 30
# The environment a worker sees: what torch and CUDA need to work, nothing else (no tokens, no keys).
_ENV_KEPT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "CUDA_HOME")
# One thread per worker: a course grades many submissions side by side, and BLAS thread pools forked from the
# server would be unsafe anyway.
_ENV_THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
_DTYPES = {name: np.dtype(name) for name in _worker.ARRAY_DTYPES}
_DTYPE_NAMES = {dtype: name for name, dtype in _DTYPES.items()}  # a dict lookup: dtype.name is slow
_MAX_DIMENSIONS = 64
_SIGNALS: dict[int, str] = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGABRT: "aborted",
    signal.SIGFPE: "arithmetic fault",
    signal.SIGILL: "illegal instruction",
    signal.SIGKILL: "killed; the system may have run out of memory",
}


@dataclass(frozen=True)
class Limits:
    """What one worker may use. Times are in seconds."""

    call_timeout: float = 10.0  # wall clock for one call of a submitted function
    load_timeout: float = 30.0  # wall clock to run the submission's top-level code
    memory_mb: int = 2048  # address space a worker may add to what it maps after importing torch
    cpu_seconds: int = 600  # CPU time of one worker process (RLIMIT_CPU)
    output_limit: int = 64 * 1024  # bytes of captured stdout+stderr kept; the rest is counted and dropped
    allow_autograd: bool = False

    def __post_init__(self) -> None:
        for name in ("call_timeout", "load_timeout", "memory_mb", "cpu_seconds", "output_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidArgument(f"{name}={value!r}: expected a positive number")
        for name in ("memory_mb", "cpu_seconds", "output_limit"):
            if not isinstance(getattr(self, name), int):
                raise InvalidArgument(f"{name}={getattr(self, name)!r}: expected a positive integer")


def prestart() -> None:
    """Start the fork server now, without waiting for it: its torch import (seconds) then overlaps with the
    caller's own imports instead of following them in the first :meth:`Worker.start`."""
    _server()


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
        self._state = _State()
        self._finalizer = weakref.finalize(self, self._state.release)
        self._defined: frozenset[str] = frozenset()
        self._started = False
        self._closed = False
        self._cuda = False
        self._final_output: str | None = None

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
        return _read_output(Path(self._state.tmpdir, "output.txt"), self._limits.output_limit)

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
            os.mkdir(os.path.join(self._state.tmpdir, "work"))
        self._defined = self._spawn()
        self._started = True

    def call(
        self, function: str, args: Sequence[np.ndarray], *, key: str | None = None, device: str = "cpu"
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
        arrays = [_wire_array(array, index) for index, array in enumerate(args)]
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
            "args": [{"dtype": _DTYPE_NAMES[a.dtype], "shape": list(a.shape)} for a in arrays],
        }
        deadline = time.monotonic() + self._limits.call_timeout
        try:
            _send(child.sock, request, [a.reshape(-1).view(np.uint8).data for a in arrays], deadline)
            reply, payload = _receive(child.sock, deadline, self._max_result_bytes)
            return self._result(function, key, device, reply, payload)
        except _Timeout:
            self._kill()
            raise SubmissionFailure(
                "timeout",
                f"{function}() did not return within {self._limits.call_timeout:g} s and was stopped: "
                "look for a loop that never ends or work that grows too fast with the input size",
            ) from None
        except _Gone:
            facts = self._kill()
            raise _death(
                f"{function}()", facts, self._limits, "a gradient function must return its result, not end the process"
            ) from None
        except _Garbled as exc:
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

    @property
    def _max_result_bytes(self) -> int:
        return self._limits.memory_mb * 2**20 + 2**26

    def _spawn(self) -> frozenset[str]:
        """Fork a worker and load the submission in it; raises LoadError."""
        tmpdir = self._state.tmpdir
        assert tmpdir is not None
        workdir = os.path.join(tmpdir, "work")
        config = {
            "workdir": workdir,
            "output": os.path.join(tmpdir, "output.txt"),
            "env": _scrubbed_env(workdir),
            "filename": self._source.filename,
            "cuda": self._cuda,
            "allow_autograd": self._limits.allow_autograd,
            "limits": {
                "memory_mb": self._limits.memory_mb,
                "cpu_seconds": self._limits.cpu_seconds,
                "file_bytes": _FILE_BYTES,
            },
        }
        self._state.child = _fork(config)
        sock = self._state.child.sock
        path = self._source.path
        deadline = time.monotonic() + self._limits.load_timeout
        try:
            _send(sock, {"op": "load"}, [(self._source.program or self._source.code).encode("utf-8", "surrogatepass")],
                  deadline)
            reply, _ = _receive(sock, deadline, 0)
            status = _field(reply, "status", str)
            if status == "loaded":
                names = _field(reply, "defined", list)
                if not all(isinstance(name, str) for name in names):
                    raise _Garbled("non-text names in the list of definitions")
                return frozenset(names)
            if status != "failed":
                raise _Garbled(f"unexpected status {status!r}")
            error = self._load_failure(reply)
        except _Timeout:
            self._kill()
            raise load_error(
                f"{path} did not finish loading within {self._limits.load_timeout:g} s: its top-level code must "
                "only define functions (move training loops and experiments into functions that are not called)",
                "timeout",
            ) from None
        except _Gone:
            facts = self._kill()
            failure = _death(
                f"{path}, while loading", facts, self._limits, "its top-level code must only define functions"
            )
            reason = {"timeout": "timeout"}.get(failure.reason, "exit" if facts.get("exit") is not None else "crash")
            raise load_error(failure.message, reason) from None
        except _Garbled as exc:
            self._kill()
            raise load_error(f"{path}: the worker sent a malformed reply while loading it ({exc})", "crash") from None
        self._kill()
        raise error

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

    def _load_failure(self, reply: dict[str, Any]) -> LoadError:
        path, kind = self._source.path, _field(reply, "kind", str)
        where = self._where(reply)
        if kind == "forbidden":
            return load_error(f"{path}: {_forbidden_message(_field(reply, 'api', str), where)}", "forbidden")
        if kind == "exit":
            code = _field(reply, "message", str)
            return load_error(
                f"{path} tried to end the program (SystemExit({code})) while loading{where}: a submission must only "
                'define functions; remove the call or put it under `if __name__ == "__main__":`',
                "exit",
            )
        if kind == "memory":
            return load_error(
                f"{path} ran out of memory while loading{where}: its top-level code needs more than the "
                f"{self._limits.memory_mb} MB a submission may use",
                "memory",
            )
        if kind != "exception":
            raise _Garbled(f"unexpected failure kind {kind!r}")
        frames = _field(reply, "frames", list)
        lines = [f"{path} raised an exception while loading (its top-level code ran into an error):"]
        lines += [f"  {self._source.locate(n)}, in {f}: {self._source.line(n)}" for n, f in _frames(frames)]
        lines.append(f"{_field(reply, 'type', str)}: {_field(reply, 'message', str)}{self._hint(reply)}")
        return load_error("\n".join(lines), "error")

    def _result(
        self, function: str, key: str | None, device: str, reply: dict[str, Any], payload: bytearray
    ) -> np.ndarray:
        status = _field(reply, "status", str)
        if status == "ok":
            return _rebuild(reply, payload)
        name = f"{function}()"
        if status == "missing":
            if _field(reply, "what", str) == "key":
                keys = ", ".join(repr(k) for k in _field(reply, "keys", list)[:20] if isinstance(k, str))
                raise SubmissionFailure(
                    "missing", f"{name} returned a mapping without the key {key!r} (its keys: {keys or 'none'})"
                )
            kind = _field(reply, "type", str)
            if kind == "NoneType":
                callables = ", ".join(sorted(self._defined)) or "none"
                raise SubmissionFailure(
                    "missing",
                    f"the submission does not define {function}(): define it at the top level of the file "
                    f"(functions it defines: {callables})",
                )
            raise SubmissionFailure("missing", f"{function} in the submission is a {kind}, not a function")
        if status == "raised":
            raise self._raised(name, reply)
        if status == "bad-result":
            kind = _field(reply, "type", str)
            if reply.get("wanted") == "mapping":
                message = f"{name} returned {kind}; expected a mapping (such as a dict) with the key {key!r}"
            elif "dtype" in reply:
                dtype = _field(reply, "dtype", str)
                message = f"{name} returned a {kind} of dtype {dtype}, which cannot be checked: return real numbers"
            else:
                message = f"{name} returned {kind}; expected a torch.Tensor (or a numpy.ndarray)"
            raise SubmissionFailure("error", message)
        if status == "mutated":
            names = _field(reply, "names", list)
            which = []
            for index in _field(reply, "indices", list):
                if not isinstance(index, int) or isinstance(index, bool):
                    raise _Garbled("a non-integer argument index")
                label = names[index] if 0 <= index < len(names) and isinstance(names[index], str) else None
                which.append(f"argument {index + 1}" + (f" ({label})" if label else ""))
            raise SubmissionFailure(
                "mutated-input",
                f"{name} changed its input {', '.join(which)} in place: gradient functions must leave their inputs "
                "as they were (write `x = x * 2`, not `x *= 2`, `x.mul_(2)` or `x[...] = …`)",
            )
        if status == "bad-device":
            raise InvalidArgument(f"device={device!r} cannot be used in the worker: {_field(reply, 'message', str)}")
        if status == "internal":
            raise SubmissionFailure("error", f"the worker failed while calling {name}: {reply.get('message')}")
        raise _Garbled(f"unexpected status {status!r}")

    def _raised(self, name: str, reply: dict[str, Any]) -> SubmissionFailure:
        kind, where = _field(reply, "kind", str), self._where(reply)
        if kind == "forbidden":
            return SubmissionFailure("forbidden", f"{name}: {_forbidden_message(_field(reply, 'api', str), where)}")
        if kind == "exit":
            code = _field(reply, "message", str)
            return SubmissionFailure(
                "error",
                f"{name} tried to end the program (SystemExit({code})){where}: a gradient function must return its "
                "result, not exit",
            )
        if kind == "memory":
            return SubmissionFailure(
                "memory",
                f"{name} ran out of memory{where}: it needs more than the {self._limits.memory_mb} MB a "
                f"submission may use ({_field(reply, 'type', str)}: {_field(reply, 'message', str)})",
            )
        if kind != "exception":
            raise _Garbled(f"unexpected failure kind {kind!r}")
        return SubmissionFailure(
            "error",
            f"{name} raised {_field(reply, 'type', str)}: {_field(reply, 'message', str)}{where}{self._hint(reply)}",
        )

    def _where(self, reply: dict[str, Any]) -> str:
        """Where the innermost submission line of a failure is: " at cell 3, line 2 (in grad_W1): `…`"."""
        frames = _frames(_field(reply, "frames", list))
        if not frames:
            return ""
        lineno, function = frames[-1]
        text = self._source.line(lineno)
        context = f" (in {function})" if function != "<module>" else ""
        return f" at {self._source.locate(lineno)}{context}" + (f": `{text}`" if text else "")

    def _hint(self, reply: dict[str, Any]) -> str:
        name = reply.get("name")
        lineno = self._source.skipped_binding(name) if isinstance(name, str) else None
        if lineno is None:
            return ""
        return (
            f"\n(note: `{name}` is set at {self._source.locate(lineno)}, which was not run: from a notebook only "
            "imports, functions, classes and constant assignments are loaded; load it with run_all_cells=True "
            "to run every cell)"
        )


# --- the worker process as the parent sees it -------------------------------------------------------------


class _Child:
    """One worker process: its id (the server's child, not ours) and our end of its socket."""

    def __init__(self, server: _ForkServer, pid: int, sock: socket.socket) -> None:
        self.server, self.pid, self.sock = server, pid, sock

    def kill(self) -> dict[str, Any]:
        """Stop the process (SIGKILL to its session) and say how it ended: {"signal": n} or {"exit": n}."""
        try:
            return self.server.reap(self.pid)
        except _ServerGone:
            return {}  # the server took its workers with it
        finally:
            self.sock.close()


class _State:
    """What a Worker owns outside Python, kept apart from the Worker so a finalizer can release it."""

    def __init__(self) -> None:
        self.child: _Child | None = None
        self.tmpdir: str | None = None

    def release(self) -> None:
        child, self.child = self.child, None
        if child is not None:
            child.kill()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


def _death(what: str, facts: dict[str, Any], limits: Limits, advice: str) -> SubmissionFailure:
    """How a worker that vanished ended ({"signal": n} or {"exit": n} from the server), as a failure."""
    number, code = facts.get("signal"), facts.get("exit")
    if number == signal.SIGXCPU:
        return SubmissionFailure(
            "timeout", f"{what} used up the worker's CPU-time limit of {limits.cpu_seconds} s and was stopped"
        )
    if isinstance(number, int):
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        described = _SIGNALS.get(number)
        how = f"the worker process died with {name}" + (f" ({described})" if described else "")
    elif isinstance(code, int):
        how = f"the worker process exited with status {code} (os._exit, or a crash in native code)"
    elif not facts:
        return SubmissionFailure(
            "error",
            f"{what}: the worker process was lost with the process that starts workers, which is not necessarily "
            "the submission's fault: check it again",
        )
    else:
        how = "the worker process ended unexpectedly"
    return SubmissionFailure("error", f"{what}: {how}; {advice}")


def _forbidden_message(api: str, where: str) -> str:
    if api.startswith("import "):
        return (
            f"`{api}`{where} is forbidden: a submission may not use the checker or its reference models; "
            "derive the gradients by hand"
        )
    return (
        f"{api} was used{where}, which is forbidden: analytic gradients must be derived by hand, not computed "
        "with autograd"
    )


def _frames(frames: list[Any]) -> list[tuple[int, str]]:
    checked = []
    for frame in frames:
        if (
            not isinstance(frame, list)
            or len(frame) != 2
            or not isinstance(frame[0], int)
            or not isinstance(frame[1], str)
        ):
            raise _Garbled("a malformed traceback frame")
        checked.append((frame[0], frame[1][:200]))
    return checked


def _rebuild(reply: dict[str, Any], payload: bytearray) -> np.ndarray:
    """The returned array, from a dtype whitelist, a shape and exactly as many bytes as they imply."""
    dtype = _DTYPES.get(_field(reply, "dtype", str))
    if dtype is None:
        raise _Garbled(f"dtype {reply['dtype']!r} is not one that may cross")
    shape = _field(reply, "shape", list)
    if len(shape) > _MAX_DIMENSIONS or not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**62 for n in shape
    ):
        raise _Garbled(f"shape {shape!r} is not a list of sizes")
    nbytes = _field(reply, "nbytes", int)
    if nbytes != math.prod(shape) * dtype.itemsize or nbytes != len(payload):
        raise _Garbled(f"{len(payload)} bytes do not make an array of shape {tuple(shape)} and dtype {dtype}")
    if nbytes == 0:
        return np.zeros(shape, dtype)
    return np.frombuffer(payload, dtype).reshape(shape)


def _wire_array(array: object, index: int) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise InvalidArgument(f"args[{index}]={type(array).__name__}: expected a numpy.ndarray")
    array = np.ascontiguousarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype not in _DTYPE_NAMES:
        raise InvalidArgument(f"args[{index}].dtype={array.dtype}: expected one of {', '.join(_DTYPES)}")
    return array


def _read_output(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            data = file.read(limit)
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    if size > len(data):
        text += f"\n[… {size - len(data)} more bytes of output were dropped]"
    return text


def _scrubbed_env(home: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in _ENV_KEPT if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    return {**env, "HOME": home, "TMPDIR": home, **_ENV_THREADS}


# --- framing on a worker's socket, with deadlines ---------------------------------------------------------


class _Timeout(Exception):
    """The worker did not answer before the deadline."""


class _Gone(Exception):
    """The worker's end of the socket closed: it exited or was killed."""


class _Garbled(Exception):
    """The worker sent something that is not a well-formed reply."""


def _field(message: dict[str, Any], name: str, kind: type) -> Any:
    value = message.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Garbled(f"field {name!r} is {type(value).__name__}, expected {kind.__name__}")
    return value


def _send(sock: socket.socket, header: dict[str, Any], payloads: Sequence[Any], deadline: float) -> None:
    encoded = json.dumps(header).encode()
    size = sum(memoryview(p).nbytes for p in payloads)
    frame = _worker.FRAME.pack(len(encoded), size) + encoded
    if size <= 1 << 20:  # small arguments: one system call; large ones: no extra copy
        _send_all(sock, b"".join([frame, *payloads]), deadline)
        return
    _send_all(sock, frame, deadline)
    for payload in payloads:
        _send_all(sock, payload, deadline)


def _send_all(sock: socket.socket, data: Any, deadline: float) -> None:
    sock.settimeout(_remaining(deadline))
    try:
        sock.sendall(data)
    except TimeoutError:
        raise _Timeout from None
    except OSError:
        raise _Gone from None


def _receive(sock: socket.socket, deadline: float, max_payload: int) -> tuple[dict[str, Any], bytearray]:
    header_size, payload_size = _worker.FRAME.unpack(_receive_exact(sock, _worker.FRAME.size, deadline))
    if header_size > _worker.MAX_HEADER_BYTES:
        raise _Garbled(f"a {header_size}-byte header")
    if payload_size > max_payload:
        raise _Garbled(f"a {payload_size}-byte payload where at most {max_payload} may come")
    try:
        header = json.loads(_receive_exact(sock, header_size, deadline))
    except (ValueError, RecursionError):
        raise _Garbled("a header that is not JSON") from None
    if not isinstance(header, dict):
        raise _Garbled("a header that is not a JSON object")
    return header, _receive_exact(sock, payload_size, deadline)


def _receive_exact(sock: socket.socket, size: int, deadline: float) -> bytearray:
    buffer = bytearray(size)
    view, received = memoryview(buffer), 0
    while received < size:
        sock.settimeout(_remaining(deadline))
        try:
            n = sock.recv_into(view[received:])
        except TimeoutError:
            raise _Timeout from None
        except OSError:
            raise _Gone from None
        if n == 0:
            raise _Gone
        received += n
    return buffer


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Timeout
    return left


# --- the fork server --------------------------------------------------------------------------------------


class _ServerGone(Exception):
    """The fork server died or stopped answering."""


class _ForkServer:
    """A process that has imported torch and forks workers on request (``_worker.serve``).

    It is started with a scrubbed environment, in its own session (the terminal's Ctrl-C goes to us, and we
    shut it down), and it exits, killing its workers, when our end of its control socket closes, even if we
    are killed. Workers are its children, not ours: it kills and reaps them when asked, so a worker's pid is
    never reused while we might still signal it.
    """

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.lock = threading.Lock()
        self.home = tempfile.mkdtemp(prefix="gradcheckers-server-")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = ours
        path = [os.path.abspath(entry) for entry in sys.path]
        command = [sys.executable, "-I", "-B", "-X", "utf8", _worker.__file__, str(theirs.fileno()), json.dumps(path)]
        log_path = os.path.join(self.home, "server.log")
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.home,
                env=_scrubbed_env(self.home),
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        theirs.close()
        self.log_path = log_path
        # The server imports torch while we go on: prestart() overlaps that import with the parent's own.
        self.ready = False

    def wait_ready(self) -> None:
        """Block until the server has imported torch and answered "ready" (call with ``self.lock`` held)."""
        if self.ready:
            return
        try:
            ready = self._answer(_SERVER_START_TIMEOUT)
        except _ServerGone:
            ready = {}
        if ready.get("op") != "ready":
            detail = ready.get("message") or _read_output(Path(self.log_path), 4000).strip() or "no output"
            self.process.kill()
            raise load_error(f"could not start the worker process that runs submissions: {detail}", "internal")
        self.ready = True

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.process.poll() is None

    def fork(self, config: dict[str, Any]) -> tuple[int, socket.socket]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self.lock:
                self.wait_ready()
                try:
                    socket.send_fds(
                        self.control, [json.dumps({"op": "fork", "config": config}).encode()], [theirs.fileno()]
                    )
                except OSError:
                    raise _ServerGone from None
                reply = self._answer(_CONTROL_TIMEOUT)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        if reply.get("op") == "error":
            ours.close()
            raise load_error(f"could not start a worker process: {reply.get('message')}", "internal")
        if reply.get("op") != "forked" or not isinstance(reply.get("pid"), int):
            ours.close()
            raise _ServerGone
        return reply["pid"], ours

    def reap(self, pid: int) -> dict[str, Any]:
        with self.lock:
            self.wait_ready()
            try:
                self.control.sendall(json.dumps({"op": "reap", "pid": pid}).encode())
            except OSError:
                raise _ServerGone from None
            return self._answer(_CONTROL_TIMEOUT)

    def _answer(self, timeout: float) -> dict[str, Any]:
        self.control.settimeout(timeout)
        try:
            data = self.control.recv(1 << 16)
            answer = json.loads(data) if data else None
        except (OSError, ValueError):
            answer = None
        if not isinstance(answer, dict):
            raise _ServerGone
        return answer

    def close(self) -> None:
        self.control.close()  # the server sees EOF, kills its workers and exits
        if self.owner == os.getpid():
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)


_server_instance: _ForkServer | None = None
_server_lock = threading.Lock()


def _server() -> _ForkServer:
    global _server_instance
    with _server_lock:
        if _server_instance is None or not _server_instance.alive():
            if _server_instance is not None and _server_instance.owner == os.getpid():
                _server_instance.close()
            _server_instance = _ForkServer()
        return _server_instance


def _fork(config: dict[str, Any]) -> _Child:
    """A new worker; a server that has died is replaced once."""
    for attempt in range(2):
        server = _server()
        try:
            pid, sock = server.fork(config)
            return _Child(server, pid, sock)
        except _ServerGone:
            with _server_lock:
                server.process.kill()
            if attempt:
                raise load_error("the worker process that runs submissions stopped answering", "internal") from None
    raise AssertionError("unreachable")


def _shutdown_server() -> None:
    global _server_instance
    with _server_lock:
        server, _server_instance = _server_instance, None
    if server is not None and server.owner == os.getpid():
        server.close()


def _forget_server_after_fork() -> None:
    # A process forked from ours must not talk on our control socket; it starts its own server if it needs one.
    global _server_instance, _server_lock
    _server_instance, _server_lock = None, threading.Lock()


atexit.register(_shutdown_server)
os.register_at_fork(after_in_child=_forget_server_after_fork)
