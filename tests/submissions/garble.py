"""Writes nonsense on every socket its process holds: the worker's reply channel included."""

import os
import stat


def _sockets():
    for fd in range(1024):  # not /proc/self/fd: a worker cannot read /proc
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                yield fd
        except OSError:
            pass


def grad_W1(X, Y, W1, b1, W2, b2):
    for fd in _sockets():
        os.write(fd, b"\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    return X


def claim_huge(X, Y, W1, b1, W2, b2):
    for fd in _sockets():
        os.write(fd, b"\x00\x00\x00\x02\xff\xff\xff\xff\xff\xff\xff\xff{}")
    import time

    time.sleep(100)


def grad_W2(X, Y, W1, b1, W2, b2):
    return X.T @ X
