"""Hostile: finds the worker's own reply socket and announces a 2 GiB result that never comes."""

import gc
import json
import socket
import struct
import time


def grad_W1(X, Y, W1, b1, W2, b2):
    header = json.dumps({"status": "ok", "dtype": "float64", "shape": [2**28], "nbytes": 2**31}).encode()
    for thing in gc.get_objects():
        if isinstance(thing, socket.socket) and thing.fileno() >= 0:
            try:
                thing.sendall(struct.pack("!IQ", len(header), 2**31) + header + b"\0" * 4096)
            except OSError:
                pass
    time.sleep(30)
