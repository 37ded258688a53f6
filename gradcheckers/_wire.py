"""The wire between the parent and a worker, as the parent reads it: framing with deadlines, and the checks that
turn untrusted bytes into plain values (nothing is unpickled; every field is checked against what was asked).

A malformed reply raises :class:`Garbled`; the caller treats it as a crash of the worker.
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradcheckers import _worker
from gradcheckers.errors import InvalidArgument

__all__ = [
    "DTYPES", "DTYPE_NAMES", "Garbled", "Gone", "Timeout", "field", "frames", "isolation_record",
    "max_result_bytes", "rebuild", "receive", "send", "unavailable", "wire_array",
]

DTYPES = {name: np.dtype(name) for name in _worker.ARRAY_DTYPES}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}  # a dict lookup: dtype.name is slow
_MAX_DIMENSIONS = 64


class Timeout(Exception):
    """The worker did not answer before the deadline."""


class Gone(Exception):
    """The worker's end of the socket closed: it exited or was killed."""


class Garbled(Exception):
    """The worker sent something that is not a well-formed reply."""


def field(message: dict[str, Any], name: str, kind: type) -> Any:
    value = message.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Garbled(f"field {name!r} is {type(value).__name__}, expected {kind.__name__}")
    return value


def send(sock: socket.socket, header: dict[str, Any], payloads: Sequence[Any], deadline: float) -> None:
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
        raise Timeout from None
    except OSError:
        raise Gone from None


def receive(sock: socket.socket, deadline: float, max_payload: int) -> tuple[dict[str, Any], bytearray]:
    header_size, payload_size = _worker.FRAME.unpack(_receive_exact(sock, _worker.FRAME.size, deadline))
    if header_size > _worker.MAX_HEADER_BYTES:
        raise Garbled(f"a {header_size}-byte header")
    if payload_size > max_payload:
        raise Garbled(f"a {payload_size}-byte payload where at most {max_payload} may come")
    try:
        header = json.loads(_receive_exact(sock, header_size, deadline))
    except (ValueError, RecursionError):
        raise Garbled("a header that is not JSON") from None
    if not isinstance(header, dict):
        raise Garbled("a header that is not a JSON object")
    return header, _receive_exact(sock, payload_size, deadline)


def _receive_exact(sock: socket.socket, size: int, deadline: float) -> bytearray:
    buffer = bytearray(size)
    view, received = memoryview(buffer), 0
    while received < size:
        sock.settimeout(_remaining(deadline))
        try:
            n = sock.recv_into(view[received:])
        except TimeoutError:
            raise Timeout from None
        except OSError:
            raise Gone from None
        if n == 0:
            raise Gone
        received += n
    return buffer


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise Timeout
    return left



def frames(frames: list[Any]) -> list[tuple[int, str]]:
    checked = []
    for frame in frames:
        if (
            not isinstance(frame, list)
            or len(frame) != 2
            or not isinstance(frame[0], int)
            or not isinstance(frame[1], str)
        ):
            raise Garbled("a malformed traceback frame")
        checked.append((frame[0], frame[1][:200]))
    return checked


def rebuild(reply: dict[str, Any], payload: bytearray) -> np.ndarray:
    """The returned array, from a dtype whitelist, a shape and exactly as many bytes as they imply."""
    dtype = DTYPES.get(field(reply, "dtype", str))
    if dtype is None:
        raise Garbled(f"dtype {reply['dtype']!r} is not one that may cross")
    shape = field(reply, "shape", list)
    if len(shape) > _MAX_DIMENSIONS or not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**62 for n in shape
    ):
        raise Garbled(f"shape {shape!r} is not a list of sizes")
    nbytes = field(reply, "nbytes", int)
    if nbytes != math.prod(shape) * dtype.itemsize or nbytes != len(payload):
        raise Garbled(f"{len(payload)} bytes do not make an array of shape {tuple(shape)} and dtype {dtype}")
    if nbytes == 0:
        return np.zeros(shape, dtype)
    return np.frombuffer(payload, dtype).reshape(shape)


def wire_array(array: object, index: int) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise InvalidArgument(f"args[{index}]={type(array).__name__}: expected a numpy.ndarray")
    array = np.ascontiguousarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.dtype not in DTYPE_NAMES:
        raise InvalidArgument(f"args[{index}].dtype={array.dtype}: expected one of {', '.join(DTYPES)}")
    return array


def isolation_record(message: dict[str, Any]) -> dict[str, str]:
    """The worker's first frame: what each confinement layer achieved, checked field by field."""
    if message.get("op") != "confined":
        raise Garbled("no confinement record before loading")
    record = field(message, "isolation", dict)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in record.items()) or len(record) > 32:
        raise Garbled("a malformed confinement record")
    return {k[:40]: v[:200] for k, v in record.items()}


def unavailable(state: str | None) -> bool:
    return state is None or state.startswith(("unavailable", "unchanged"))


# Largest reply accepted, decided before a byte of it is allocated. A gradient has its parameter's shape, and
# every parameter is one of the arguments, so a correct result is never larger than the largest argument; the
# 64 MiB floor still lets the usual wrong shapes come back for a precise message (an outer product of two
# arguments of the largest drawn case, (64, 8) and (8, 32) in float64, is 1 MiB), while a reply announcing
# more is refused as malformed instead of being allocated (a 2 GiB announcement costs nothing).
_REPLY_FLOOR = 64 * 2**20


def max_result_bytes(arrays: Sequence[np.ndarray]) -> int:
    return max(_REPLY_FLOOR, 4 * sum(a.nbytes for a in arrays))
