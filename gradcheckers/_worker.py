"""The child side of the sandbox: a fork server that has imported torch, and the worker each fork becomes.

``sandbox.py`` runs this file as a script (``python -I -X utf8 .../_worker.py CONTROL_FD SYS_PATH_JSON``) with a
scrubbed environment. The server imports numpy and torch once, then forks one worker per request; a fork of a
process that has already imported torch takes milliseconds, where a fresh interpreter takes seconds.

Each worker runs one submission: it applies the resource limits, blocks imports of ``gradcheckers`` and
``models``, replaces the autograd entry points with refusals, executes the submission's code and then answers
``call`` requests. Replies carry facts only (status words, numbers, raw array bytes, exception text); the
parent turns them into messages and never unpickles anything, so a submission cannot smuggle objects across.

The guards here stop honest mistakes (calling ``.backward()``, importing the reference implementation); a
determined adversary running Python in the same process could undo them. The parent's guarantees (nothing but
numbers and text crosses, limits on time, memory and output) do not depend on the child cooperating.

Importing this module has no side effects and needs neither numpy nor torch: the parent imports it for the
wire-format constants below.
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import numpy as np
    import torch

# ---------------------------------------------------------------------------------------------------------
# Wire format, shared with sandbox.py. Every message in either direction on a worker's socket is one frame:
# FRAME (JSON length, payload length), the UTF-8 JSON header, then the payload bytes.
FRAME = struct.Struct("!IQ")
MAX_HEADER_BYTES = 1 << 20
# dtypes that may cross the boundary, in numpy's spelling. bfloat16 has no numpy dtype: the worker widens it to
# float32, which is exact. Anything else (complex, object, strings) is reported as an unusable result.
ARRAY_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)
BLOCKED_PACKAGES = ("gradcheckers", "models")
# What a numpy-mode worker does not have at all.
NUMPY_ONLY_ABSENT = ("torch", "functorch", "torchgen")
# The name the submission's module gets: not "__main__", so `if __name__ == "__main__":` blocks stay asleep.
SUBMISSION_MODULE = "__submission__"
# Exit status of a worker whose own code (not the submission's) failed; the parent reports it as a crash.
INTERNAL_EXIT = 70

_MAX_TEXT = 2000  # characters of an exception message that cross; a 50 MB message is the child's problem
_MAX_NAMES = 2000  # names in a `defined` or mapping-keys list
_MAX_NOTE_TEXT = 300  # characters of a stopped notebook cell's message: ~0.5 KB a note, 2,000 cells in 1 MiB


# After a notebook cell's budget runs out, the cut-off is raised again at this interval until the cell ends: a cell
# that caught the first one (a bare `except:` in a loop) is stopped by a later one unless it catches every one,
# and then the load's own timeout ends the worker. 0.1 s: a few more raises per second of overrun, no busy loop.
_CUT_OFF_AGAIN_SECONDS = 0.1


class ForbiddenCall(BaseException):
    """Raised in the worker when a submission uses autograd or imports the checker.

    A BaseException so that a bare ``except Exception`` in the submission does not swallow it; the worker also
    records every refusal, so swallowing it with ``except BaseException`` does not hide it either.
    """


# ---------------------------------------------------------------------------------------------------------
# The fork server.


def serve(control_fd: int, path: list[str], mode: str = "torch") -> None:
    """Import the heavy modules, say "ready", then fork a worker for each request until the parent hangs up.

    ``mode`` is "torch" or "numpy"; a numpy server never imports torch, and its workers cannot read it.
    """
    control = socket.socket(fileno=control_fd)
    sys.path[:] = path
    try:
        _preload(torch=mode == "torch")
        from gradcheckers import confine

        # Opened once here, inherited by every fork: a worker only turns these into its Landlock rules.
        view = confine.RuntimeView.prepare(path, torch=mode == "torch")
    except BaseException as exc:  # tell the parent why, rather than dying silently
        _send_control(control, {"op": "error", "message": f"{type(exc).__name__}: {exc}"})
        raise
    server_pid = os.getpid()
    _send_control(control, {"op": "ready", "pid": server_pid})
    children: set[int] = set()
    try:
        while True:
            data, fds, _flags, _addr = socket.recv_fds(control, 1 << 16, 4)
            if not data:
                break  # the parent closed its end or died: take the workers down with us
            request = json.loads(data)
            if request["op"] == "fork":
                try:
                    pid = os.fork()
                except OSError as exc:  # out of processes or memory: the parent reports it
                    for fd in fds:
                        os.close(fd)
                    _send_control(control, {"op": "error", "message": f"fork failed: {exc}"})
                    continue
                if pid == 0:
                    control.close()
                    _worker_main(fds, request["config"], view, server_pid=server_pid)
                for fd in fds:
                    os.close(fd)
                children.add(pid)
                _send_control(control, {"op": "forked", "pid": pid})
            elif request["op"] == "reap":
                pid = int(request["pid"])
                status = _reap(pid) if pid in children else None
                children.discard(pid)
                left = _survivors(pid, confine)
                _send_control(control, {"op": "reaped", "pid": pid, "survivors": left, **_describe_status(status)})
    finally:
        for pid in children:
            _reap(pid)
            _survivors(pid, confine)


def _survivors(pid: int, confine: Any) -> int:
    """Verify that nothing runs as the worker's own user any more (killing what does): a worker has no way
    to start processes, but should one layer have failed, no process it started outlives the check."""
    ids = confine.worker_ids(pid)
    return confine.survivors(ids[0]) if ids is not None else 0


def _preload(*, torch: bool) -> None:
    # Everything a worker needs, imported once here so forks inherit it instead of paying for it per submission.
    import ctypes  # noqa: F401
    import inspect  # noqa: F401
    import linecache  # noqa: F401
    import traceback  # noqa: F401

    import numpy  # noqa: F401

    if torch:
        _preload_torch()


def _preload_torch() -> None:
    import torch
    import torch.autograd.forward_ad
    import torch.autograd.functional
    import torch.func

    try:
        import functorch  # noqa: F401  (so the guards can cover its names too)
    except ImportError:
        pass
    # Touch the CPU allocator and a matmul so the first call in each fork does not pay lazy initialisation;
    # with OMP/MKL/OpenBLAS limited to one thread by the environment this starts no thread pool to fork over.
    torch.ones(2, 2) @ torch.ones(2, 2)


def _send_control(control: socket.socket, message: dict[str, Any]) -> None:
    control.sendall(json.dumps(message).encode())


def _reap(pid: int) -> int | None:
    """Kill a worker (and anything it started in its session) and collect its exit status."""
    import signal

    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)  # a zombie ignores this, and its status is still the original one
        except (ProcessLookupError, PermissionError):
            pass
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None


def _describe_status(status: int | None) -> dict[str, Any]:
    if status is None:
        return {"signal": None, "exit": None}
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status), "exit": None}
    return {"signal": None, "exit": os.waitstatus_to_exitcode(status)}


# ---------------------------------------------------------------------------------------------------------
# The worker (a fork of the server).


def _worker_main(fds: list[int], config: dict[str, Any], view: Any, *, server_pid: int) -> NoReturn:
    status = INTERNAL_EXIT
    try:
        sock, alarm = socket.socket(fileno=fds[0]), fds[1]
        isolation, seconds = _become_worker(config, server_pid, view)
        # The record goes out before the submission's code arrives, so only our code wrote it.
        _write_frame(sock, {"op": "confined", "isolation": isolation, "seconds": seconds}, b"")
        status = _Worker(sock, alarm, config).run()
    except BaseException:
        # Our own failure: leave the traceback in the captured output for whoever debugs the checker.
        try:
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        except BaseException:
            pass
    os._exit(status)


def _become_worker(config: dict[str, Any], server_pid: int, view: Any) -> tuple[dict[str, str], float]:
    """Limits, streams and confinement of a fresh fork; returns what each confinement layer achieved, and the
    seconds confinement took."""
    import ctypes
    import resource
    import signal
    import time

    from gradcheckers import confine

    torch = sys.modules.get("torch")

    # Our own session: the parent's Ctrl-C does not reach us, and the server's killpg reaches anything we start.
    os.setsid()
    # Die with the server (PR_SET_PDEATHSIG = 1), so that no worker outlives a checker that was killed.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() != server_pid:
        os._exit(INTERNAL_EXIT)  # the server died before the line above took effect
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with an OSError, not a kill

    os.chdir(config["workdir"])
    os.environ.clear()
    os.environ.update(config["env"])
    sys.argv = [config["filename"]]

    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    # stdout and stderr go to a file, not a pipe: a flood of output only grows a file the parent reads a
    # bounded prefix of, and a full pipe can never block the worker.
    out = os.open(config["output"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)

    if torch is not None:
        torch.set_num_threads(1)
    if config["cuda"] and torch is not None:
        # CUDA maps tens of GB of address space when it starts, so start it before the address-space limit.
        torch.cuda.init()
        torch.empty(1, device="cuda")

    limits = config["limits"]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"], limits["file_bytes"]))
    # torch reserves far more address space than it touches, so the limit is relative to what we have now.
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    budget = mapped + limits["memory_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (budget, budget))

    extra = [f"/dev/{name}" for name in os.listdir("/dev") if name.startswith("nvidia")] if config["cuda"] else []
    started = time.perf_counter()
    isolation = confine.apply_all(view, config["workdir"], pid=os.getpid(), extra_write=extra)
    seconds = time.perf_counter() - started
    if os.getppid() != server_pid:
        os._exit(INTERNAL_EXIT)  # the server died while the ids changed, before the death signal was set again
    isolation["torch"] = "present" if torch is not None else "absent"
    return isolation, seconds


class _Guards:
    """The refusals installed in a worker, and the record of which were triggered, and where."""

    def __init__(self, filename: str, alarm: int) -> None:
        self.filename = filename
        # (API, the submission's frames at the moment of the refusal): kept even if the submission swallows
        # the exception, and the frames say where even then.
        self.used: list[tuple[str, list[list[Any]]]] = []
        # Every refusal is also told to the parent at once, on a channel of its own: a submission that empties
        # `used` (it can reach it from any refusal's closure) cannot take back what was already sent.
        self.alarm = alarm

    def record(self, api: str) -> NoReturn:
        try:
            os.write(self.alarm, api.encode()[:200])
        except OSError:
            pass  # full (the parent already knows) or closed (the parent treats that as tampering)
        frames, frame = [], sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename == self.filename:
                frames.append([frame.f_lineno, frame.f_code.co_name])
            frame = frame.f_back  # type: ignore[assignment]
        self.used.append((api, frames[::-1][-20:]))
        raise ForbiddenCall(f"{api} is not allowed in a submission: derive the gradients by hand")

    def refusal(self, api: str) -> Callable[..., NoReturn]:
        record = self.record

        def refuse(*args: object, **kwargs: object) -> NoReturn:
            record(api)

        refuse.__name__ = refuse.__qualname__ = api.rpartition(".")[2]
        return refuse

    def block_imports(self, *, torch: bool) -> None:
        for name in [m for m in sys.modules if m.partition(".")[0] in BLOCKED_PACKAGES]:
            del sys.modules[name]
        sys.meta_path.insert(0, _ImportBlocker(self.record))
        if not torch:
            sys.meta_path.insert(0, _Absent(NUMPY_ONLY_ABSENT))

    def block_autograd(self) -> None:
        import importlib

        import torch
        from torch.autograd.variable import Variable

        transforms = ("grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "linearize")
        targets: list[tuple[str, Iterable[str], str]] = [
            ("torch.autograd", ("grad", "backward"), "torch.autograd"),
            ("torch.autograd.functional", ("jacobian", "hessian", "vjp", "jvp", "hvp", "vhp"), ""),
            ("torch.autograd.forward_ad", ("dual_level", "enter_dual_level", "make_dual", "unpack_dual"), ""),
            ("torch.func", transforms, ""),
            ("torch._functorch.apis", transforms, "torch.func"),
            ("torch._functorch.eager_transforms", transforms, "torch.func"),
            ("functorch", transforms, ""),
        ]
        for module_name, attributes, shown in targets:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            for attribute in attributes:
                if hasattr(module, attribute):
                    setattr(module, attribute, self.refusal(f"{shown or module_name}.{attribute}"))
        torch.Tensor.backward = self.refusal("Tensor.backward")  # type: ignore[method-assign]
        # Every backward pass, whichever API started it, ends in the engine's run_backward; a new engine
        # object would bypass the guarded one, and the C-level dual levels bypass forward_ad's names.
        Variable._execution_engine = _engine_guard(  # type: ignore[assignment]
            Variable._execution_engine, self.refusal("the autograd engine (a backward pass)")
        )
        setattr(torch._C, "_ImperativeEngine", self.refusal("torch._C._ImperativeEngine"))  # noqa: B010
        for name in ("_enter_dual_level", "_exit_dual_level"):
            setattr(torch._C, name, self.refusal(f"torch._C.{name} (forward-mode AD)"))
        for name in ("_make_dual", "_unpack_dual"):
            setattr(torch, name, self.refusal(f"torch.{name} (forward-mode AD)"))
        # No graph is recorded at all: with grad mode off, results have no grad_fn whose nodes could be called
        # by hand. Turning it back on (enable_grad, set_grad_enabled(True)) is refused; turning it off is not.
        set_grad_enabled, refuse = torch._C._set_grad_enabled, self.refusal("torch.enable_grad")

        def set_grad(mode: bool) -> None:
            if mode:
                refuse()
            set_grad_enabled(False)

        set_grad_enabled(False)
        torch._C._set_grad_enabled = set_grad  # type: ignore[assignment]


def _engine_guard(engine: object, refuse: Callable[..., NoReturn]) -> object:
    """Stands in for torch's autograd engine: refuses backward passes, forwards everything else. The engine is
    held in a closure, not an attribute, so that `guard._engine.run_backward` is not a way around it."""

    class EngineGuard:
        run_backward = staticmethod(refuse)

        def __getattr__(self, name: str) -> Any:
            return getattr(engine, name)

    return EngineGuard()


class _CellCutOff(BaseException):
    """Raised in a notebook cell that ran past its time budget (a BaseException: `except Exception` does not
    swallow it)."""


def _cut_off(signum: int, frame: object) -> NoReturn:
    raise _CellCutOff()


class _ImportBlocker:
    """A meta-path finder that refuses the checker's own packages, so a submission cannot call the answers."""

    def __init__(self, record: Callable[[str], NoReturn]) -> None:
        self._record = record

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.partition(".")[0] in BLOCKED_PACKAGES:
            self._record(f"import {fullname}")
        return None


class _Absent:
    """A meta-path finder for numpy mode: torch does not exist (an ImportError, as for any missing package;
    the filesystem view hides torch's files as well, so removing this finder does not bring it back)."""

    def __init__(self, packages: tuple[str, ...]) -> None:
        self._packages = packages

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.partition(".")[0] in self._packages:
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: this assignment is checked in numpy mode (no torch, no autograd)",
                name=fullname,
            )
        return None


class _Siblings:
    """A meta-path finder serving the submission's sibling modules from memory (the worker cannot read its
    folder): ``import helpers`` finds the source the parent sent, compiled under the file's own name."""

    def __init__(self, sources: dict[str, str], folder: str) -> None:
        self._sources, self._folder = sources, folder

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> Any:
        import importlib.util

        if fullname not in self._sources:
            return None
        origin = os.path.join(self._folder, f"{fullname}.py")
        return importlib.util.spec_from_loader(fullname, self, origin=origin)  # type: ignore[arg-type]

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        import linecache

        code, filename = self._sources[module.__name__], os.path.join(self._folder, f"{module.__name__}.py")
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        module.__file__ = filename
        exec(compile(code, filename, "exec", dont_inherit=True), module.__dict__)


class _Worker:
    def __init__(self, sock: socket.socket, alarm: int, config: dict[str, Any]) -> None:
        self.sock = sock
        self.filename: str = config["filename"]
        self.torch = "torch" in sys.modules
        self.guards = _Guards(self.filename, alarm)
        self.guards.block_imports(torch=self.torch)
        if self.torch and not config["allow_autograd"]:
            self.guards.block_autograd()
        elif self.torch:
            # torch.func and forward-mode AD import torch._dynamo on first use (3-5 s): pay that here, under
            # the load timeout, rather than in the first call, where it would read as the submission's hang.
            try:
                import torch._dynamo  # noqa: F401
            except Exception:
                pass
        module = types.ModuleType(SUBMISSION_MODULE)
        module.__file__ = self.filename
        sys.modules[SUBMISSION_MODULE] = module
        self.namespace = module.__dict__

    def run(self) -> int:
        while True:
            try:
                header, payload = _read_frame(self.sock)
            except EOFError:
                return 0
            op = header.get("op")
            if op == "load":
                self.install_siblings(header, payload)
                code = payload[: header.get("code", len(payload))].decode("utf-8", "surrogatepass")
                reply, body = self.load(code, header.get("cells") or [], float(header.get("cell_seconds", 0))), b""
            elif op == "call":
                reply, body = self.call(header, payload)
            else:
                reply, body = {"status": "internal", "message": f"unknown request {op!r}"}, b""
            _flush_std()
            _write_frame(self.sock, reply, body)

    def install_siblings(self, header: Mapping[str, Any], payload: bytearray) -> None:
        """Make the modules of the submission's folder, sent along with it, importable by name."""
        sources, offset = {}, header.get("code", len(payload))
        for name, size in header.get("siblings", []):
            sources[name] = bytes(payload[offset : offset + size]).decode("utf-8", "surrogatepass")
            offset += size
        if sources:
            folder = os.path.dirname(self.filename)
            sys.meta_path.insert(1, _Siblings(sources, folder))

    def load(self, code: str, cells: list[list[int]], budget: float) -> dict[str, Any]:
        """Run the submission's top-level code: as one program, or a notebook's ``cells`` (number, first line,
        line count) one by one, each within ``budget`` seconds, then the lines after them (an adapter)."""
        import linecache

        # So that tracebacks the submission prints itself show its lines.
        linecache.cache[self.filename] = (len(code), None, code.splitlines(True), self.filename)
        lines, end, notes = code.split("\n"), 0, []
        for number, first, count in cells:
            note = self.run_cell("\n".join(lines[first - 1 : first - 1 + count]), first, budget)
            if note is not None:
                notes.append({"cell": number, **note})
            end = first - 1 + count
        try:
            self.run_code("\n".join(lines[end:]), end + 1)
        except BaseException as exc:
            return {"status": "failed", **self.describe(exc), "cells": notes}
        if self.guards.used:  # a refusal the submission caught and ignored
            return {"status": "failed", **self.describe(None), "cells": notes}
        names = [k for k, v in self.namespace.items() if not k.startswith("__") and callable(v)]
        return {"status": "loaded", "defined": names[:_MAX_NAMES], "cells": notes}

    def run_code(self, text: str, first: int) -> None:
        """Execute ``text``, whose first line is line ``first`` of the submission, in its namespace."""
        exec(compile("\n" * (first - 1) + text, self.filename, "exec", dont_inherit=True), self.namespace)

    def run_cell(self, text: str, first: int, budget: float) -> dict[str, Any] | None:
        """Run one notebook cell as Jupyter would: what stopped it (a refused call, the budget, an exception),
        or None when it ran to its end. The guards stay in place; only their record starts afresh per cell,
        and ``refusals`` says how many the cell made, which the parent checks against its alarm channel."""
        import signal

        self.guards.used.clear()
        error: BaseException | None = None
        previous = signal.signal(signal.SIGALRM, _cut_off)
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, budget, _CUT_OFF_AGAIN_SECONDS)
                self.run_code(text, first)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        except BaseException as exc:  # the cell's own failure, whatever it is, stops that cell only
            error = exc
        refusals = len(self.guards.used)
        if refusals:
            note = {"outcome": "forbidden", **self.describe(None)}
        elif isinstance(error, _CellCutOff):
            note = {"outcome": "cut-off"}
        elif error is not None:
            note = {"outcome": "raised", **self.describe(error)}
        else:
            return None
        self.guards.used.clear()
        # A note names the cell's innermost line and the start of its message: every cell of a long notebook
        # may have one, and the reply's header holds them all (_wire: at most MAX_HEADER_BYTES).
        note["frames"] = note.get("frames", [])[-1:]
        note["message"] = _text(note.get("message", ""), _MAX_NOTE_TEXT)
        return {**note, "refusals": refusals}

    def call(self, header: Mapping[str, Any], payload: bytearray) -> tuple[dict[str, Any], Any]:
        import numpy as np

        function = self.namespace.get(header["function"])
        if function is None or not callable(function):
            return {"status": "missing", "what": "function", "type": _type_name(function)}, b""
        device = header["device"]
        arrays, slices, offset = [], [], 0
        for spec in header["args"]:
            dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
            count = math.prod(shape)
            # A copy per argument: aligned, independent of the others, and `payload` stays the pristine original.
            arrays.append(
                np.frombuffer(payload, dtype, count, offset).reshape(shape).copy() if count else np.empty(shape, dtype)
            )
            slices.append((offset, shape, dtype))
            offset += count * dtype.itemsize
        try:
            tensors = _tensors(arrays, device) if self.torch else _numpy_arguments(arrays, device)
        except Exception as exc:
            return {"status": "bad-device", "message": _text(exc)}, b""

        self.guards.used.clear()
        try:
            value = function(*tensors, **header.get("kwargs", {}))  # kwargs: the assignment's hyperparameters
            if header["key"] is not None:
                if not isinstance(value, Mapping):
                    return {"status": "bad-result", "type": _type_name(value), "wanted": "mapping"}, b""
                if header["key"] not in value:
                    keys = [_text(k, 100) for k in list(value)[:_MAX_NAMES]]
                    return {"status": "missing", "what": "key", "keys": keys}, b""
                value = value[header["key"]]
        except BaseException as exc:
            return {"status": "raised", **self.describe(exc)}, b""
        if self.guards.used:
            return {"status": "raised", **self.describe(None)}, b""

        changed = [i for i, (t, where) in enumerate(zip(tensors, slices)) if not _unchanged(t, payload, *where)]
        if changed:
            return {"status": "mutated", "indices": changed, "names": _parameter_names(function)}, b""
        try:
            array = _as_array(value)
        except BaseException as exc:
            return {"status": "raised", **self.describe(exc)}, b""
        if array is None:
            return {"status": "bad-result", "type": _type_name(value), "wanted": "array"}, b""
        if array.dtype.name not in ARRAY_DTYPES:
            return {"status": "bad-result", "type": _type_name(value), "dtype": str(array.dtype)}, b""
        reply = {"status": "ok", "dtype": array.dtype.name, "shape": list(array.shape), "nbytes": array.nbytes}
        return reply, array.reshape(-1).view(np.uint8).data

    def describe(self, exc: BaseException | None) -> dict[str, Any]:
        """Facts about a failure: its kind, type, text and the submission's own frames (line, function)."""
        if self.guards.used:
            api, frames = self.guards.used[0]
            return {"kind": "forbidden", "api": api, "frames": frames}
        assert exc is not None
        facts: dict[str, Any] = {"type": type(exc).__qualname__, "message": _text(exc), "frames": self.frames(exc)}
        if isinstance(exc, SystemExit):
            return {**facts, "kind": "exit", "message": _text(_repr(exc.code))}
        if _is_out_of_memory(exc):
            return {**facts, "kind": "memory"}
        if isinstance(exc, NameError):
            facts["name"] = exc.name if isinstance(getattr(exc, "name", None), str) else None
        return {**facts, "kind": "exception"}

    def frames(self, exc: BaseException | None) -> list[list[Any]]:
        # Walk the traceback by hand: no linecache reads, and only frames of the submission's own code.
        frames = []
        tb = exc.__traceback__ if exc is not None else None
        while tb is not None:
            code = tb.tb_frame.f_code
            if code.co_filename == self.filename:
                frames.append([tb.tb_lineno, code.co_name])
            tb = tb.tb_next
        return frames[-20:]


def _tensors(arrays: list[np.ndarray], device: str) -> list[torch.Tensor]:
    import torch

    return [torch.from_numpy(a) if device == "cpu" else torch.from_numpy(a).to(device) for a in arrays]


def _numpy_arguments(arrays: list[np.ndarray], device: str) -> list[np.ndarray]:
    if device != "cpu":
        raise ValueError("numpy mode runs on the CPU only")
    return arrays


def _unchanged(tensor: Any, payload: bytearray, offset: int, shape: tuple[int, ...], dtype: Any) -> bool:
    """Whether an argument still holds exactly the bytes it was sent with (bitwise, so NaNs compare equal)."""
    import numpy as np

    try:
        now = tensor.detach().cpu().contiguous().numpy() if not isinstance(tensor, np.ndarray) else tensor
    except Exception:
        return False  # e.g. turned into a different kind of tensor in place
    if now.shape != shape or now.dtype != dtype:
        return False
    return memoryview(payload)[offset : offset + now.nbytes] == now.reshape(-1).view(np.uint8).data


def _as_array(value: object) -> np.ndarray | None:
    import numpy as np

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        array = tensor.cpu().resolve_conj().resolve_neg().contiguous().numpy()
    elif isinstance(value, (np.ndarray, np.generic)):  # np.generic: a numpy scalar, e.g. a loss's np.float64
        array = np.asarray(value)
    else:
        return None
    if array.dtype.kind in "biuf" and not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    # np.require, not np.ascontiguousarray: the latter gives a 0-d array (a loss, a scalar parameter's gradient)
    # a spurious axis of length 1, which the parent would then judge a wrong shape.
    return np.require(array, requirements="C")


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.OutOfMemoryError):
        return True
    text = _text(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        marker in text for marker in ("can't allocate memory", "not enough memory", "out of memory", "bad_alloc")
    )


def _parameter_names(function: Callable[..., object]) -> list[str]:
    import inspect

    try:
        return [_text(p, 100) for p in inspect.signature(function).parameters][:_MAX_NAMES]
    except BaseException:
        return []


def _type_name(value: object) -> str:
    kind = type(value)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _text(value: object, limit: int = _MAX_TEXT) -> str:
    # str() runs the submission's __str__, which may raise or return something enormous.
    try:
        text = value if isinstance(value, str) else str(value)
    except BaseException:
        text = f"<unprintable {type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + " …"


def _repr(value: object) -> str:
    try:
        return repr(value)
    except BaseException:
        return f"<unprintable {type(value).__name__}>"


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def _read_frame(sock: socket.socket) -> tuple[dict[str, Any], bytearray]:
    header_size, payload_size = FRAME.unpack(_read_exact(sock, FRAME.size))
    header = json.loads(_read_exact(sock, header_size))
    return header, _read_exact(sock, payload_size)


def _read_exact(sock: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view, received = memoryview(buffer), 0
    while received < size:
        n = sock.recv_into(view[received:])
        if n == 0:
            raise EOFError
        received += n
    return buffer


def _write_frame(sock: socket.socket, header: dict[str, Any], payload: Any) -> None:
    encoded = json.dumps(header).encode()
    size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
    sock.sendall(FRAME.pack(len(encoded), size) + encoded)
    if size:
        sock.sendall(payload)


if __name__ == "__main__":
    serve(int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "torch")
