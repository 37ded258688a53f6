"""Hostile (a probe): reports who the submission runs as, as numbers a test can check."""

import ctypes
import os

import numpy as np

PR_GET_NO_NEW_PRIVS = 39


def grad_W1(X, Y, W1, b1, W2, b2):
    libc = ctypes.CDLL(None)
    return np.array(
        [os.getuid(), os.geteuid(), os.getgid(), len(os.getgroups()), libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)],
        dtype=np.float64,
    )
