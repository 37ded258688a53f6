"""Hostile: opens a TCP connection to PORT on the loopback interface (exfiltration, fetching answers)."""

import socket

try:
    with socket.create_connection(("127.0.0.1", int("@PORT@")), timeout=2) as connection:
        connection.sendall(b"pwned")
    print("connected")
except OSError as exc:
    print("could not connect", type(exc).__name__)


def grad_W1(X, Y, W1, b1, W2, b2):
    return W1 * 0
