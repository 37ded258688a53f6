"""The fork server, as the parent sees it: a process that has imported torch (or, in numpy mode, only numpy) and
forks one worker per request (``_worker.serve``), and each worker's process and channels.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from gradcheckers import _worker
from gradcheckers.submission import load_error

__all__ = ["Child", "ForkServer", "ServerGone", "fork", "read_output", "scrubbed_env", "server"]

# Importing torch in a fresh interpreter takes seconds on a cold disk; this is only a guard against a server
# that will never answer.
_SERVER_START_TIMEOUT = 120.0
# The server answers fork and reap requests at once; waiting longer means it is wedged.
_CONTROL_TIMEOUT = 30.0
# The environment a worker sees: what torch and CUDA need to work, nothing else (no tokens, no keys).
_ENV_KEPT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "CUDA_HOME")
# One thread per worker: a course grades many submissions side by side, and BLAS thread pools forked from the
# server would be unsafe anyway.
_ENV_THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class Child:
    """One worker process: its id (the server's child, not ours), our end of its socket, and of its alarm
    channel, on which the worker reports each refused call the moment it happens."""

    def __init__(self, server: ForkServer, pid: int, sock: socket.socket, alarm: socket.socket) -> None:
        self.server, self.pid, self.sock, self._alarm = server, pid, sock, alarm

    def alarm(self) -> str | None:
        """The first refused API the worker reported since the last look, or None; a closed channel (only a
        submission closes it) counts as a refusal."""
        reported = self.alarms()
        return reported[0] if reported else None

    def alarms(self) -> list[str]:
        """Every refused API the worker reported since the last look, in order; a closed channel (only a
        submission closes it) counts as one more refusal."""
        reported: list[str] = []
        while True:
            try:
                data = self._alarm.recv(256, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return reported
            except OSError:
                data = b""
            if not data:
                return [*reported, "closing the worker's refusal channel"]
            reported.append(data.decode("utf-8", "replace"))

    def kill(self) -> dict[str, Any]:
        """Stop the process (SIGKILL to its session) and say how it ended: {"signal": n} or {"exit": n}."""
        try:
            return self.server.reap(self.pid)
        except ServerGone:
            return {}  # the server took its workers with it
        finally:
            self.sock.close()
            self._alarm.close()



def read_output(path: Path, limit: int) -> str:
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


def scrubbed_env(home: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in _ENV_KEPT if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    return {**env, "HOME": home, "TMPDIR": home, **_ENV_THREADS}



class ServerGone(Exception):
    """The fork server died or stopped answering."""


class ForkServer:
    """A process that has imported torch and forks workers on request (``_worker.serve``).

    It is started with a scrubbed environment, in its own session (the terminal's Ctrl-C goes to us, and we
    shut it down), and it exits, killing its workers, when our end of its control socket closes, even if we
    are killed. Workers are its children, not ours: it kills and reaps them when asked, so a worker's pid is
    never reused while we might still signal it.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.owner = os.getpid()
        self.lock = threading.Lock()
        self.home = tempfile.mkdtemp(prefix="gradcheckers-server-")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = ours
        path = [os.path.abspath(entry) for entry in sys.path]
        command = [sys.executable, "-I", "-B", "-X", "utf8", _worker.__file__, str(theirs.fileno()), json.dumps(path),
                   mode]
        log_path = os.path.join(self.home, "server.log")
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.home,
                env=scrubbed_env(self.home),
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
        except ServerGone:
            ready = {}
        if ready.get("op") != "ready":
            detail = ready.get("message") or read_output(Path(self.log_path), 4000).strip() or "no output"
            self.process.kill()
            raise load_error(f"could not start the worker process that runs submissions: {detail}", "internal")
        self.ready = True

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.process.poll() is None

    def fork(self, config: dict[str, Any]) -> tuple[int, socket.socket, socket.socket]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        alarm, their_alarm = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self.lock:
                self.wait_ready()
                try:
                    socket.send_fds(
                        self.control,
                        [json.dumps({"op": "fork", "config": config}).encode()],
                        [theirs.fileno(), their_alarm.fileno()],
                    )
                except OSError:
                    raise ServerGone from None
                reply = self._answer(_CONTROL_TIMEOUT)
        except BaseException:
            ours.close()
            alarm.close()
            raise
        finally:
            theirs.close()
            their_alarm.close()
        if reply.get("op") != "forked" or not isinstance(reply.get("pid"), int):
            ours.close()
            alarm.close()
            if reply.get("op") == "error":
                raise load_error(f"could not start a worker process: {reply.get('message')}", "internal")
            raise ServerGone
        return reply["pid"], ours, alarm

    def reap(self, pid: int) -> dict[str, Any]:
        with self.lock:
            self.wait_ready()
            try:
                self.control.sendall(json.dumps({"op": "reap", "pid": pid}).encode())
            except OSError:
                raise ServerGone from None
            return self._answer(_CONTROL_TIMEOUT)

    def _answer(self, timeout: float) -> dict[str, Any]:
        self.control.settimeout(timeout)
        try:
            data = self.control.recv(1 << 16)
            answer = json.loads(data) if data else None
        except (OSError, ValueError):
            answer = None
        if not isinstance(answer, dict):
            raise ServerGone
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


_servers: dict[str, ForkServer] = {}
_server_lock = threading.Lock()


def server(mode: str = "torch") -> ForkServer:
    """The fork server of a mode ("torch", or "numpy": one that never imports torch), started on demand."""
    with _server_lock:
        server = _servers.get(mode)
        if server is None or not server.alive():
            if server is not None and server.owner == os.getpid():
                server.close()
            server = _servers[mode] = ForkServer(mode)
        return server


def fork(config: dict[str, Any], mode: str) -> Child:
    """A new worker; a server that has died is replaced once."""
    for attempt in range(2):
        instance = server(mode)
        try:
            pid, sock, alarm = instance.fork(config)
            return Child(instance, pid, sock, alarm)
        except ServerGone:
            with _server_lock:
                instance.process.kill()
            if attempt:
                raise load_error("the worker process that runs submissions stopped answering", "internal") from None
    raise AssertionError("unreachable")


def _shutdown_servers() -> None:
    with _server_lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        if server.owner == os.getpid():
            server.close()


def abandon_servers() -> None:
    """For a process about to leave by ``os._exit``: close each control socket, so that its fork server kills
    its workers and exits on its own, and remove its folder, without waiting for it (the wait, with the
    server's own interpreter teardown, is most of a second of every ``gradcheckers check``)."""
    with _server_lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        if server.owner == os.getpid():
            server.control.close()
            shutil.rmtree(server.home, ignore_errors=True)


def _forget_server_after_fork() -> None:
    # A process forked from ours must not talk on our control socket; it starts its own server if it needs one.
    global _server_lock
    _servers.clear()
    _server_lock = threading.Lock()


atexit.register(_shutdown_servers)
os.register_at_fork(after_in_child=_forget_server_after_fork)
