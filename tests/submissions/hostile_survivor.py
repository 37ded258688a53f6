"""Hostile: starts processes meant to outlive the check (fork + setsid, a shell), each writing FILE later."""

import os
import subprocess

FILE = "@FILE@"

try:
    pid = os.fork()
    if pid == 0:
        os.setsid()
        import time

        time.sleep(1.5)
        with open(FILE + ".fork", "w") as handle:
            handle.write("survived")
        os._exit(0)
    print("forked", pid)
except OSError as exc:
    print("could not fork", type(exc).__name__)
try:
    subprocess.Popen(["/bin/sh", "-c", f"sleep 1.5; echo survived > {FILE}.exec"], start_new_session=True)
    print("started a shell")
except OSError as exc:
    print("could not start a shell", type(exc).__name__)
try:
    os.execv("/bin/sh", ["/bin/sh", "-c", f"echo replaced > {FILE}.execv"])
except OSError as exc:
    print("could not exec", type(exc).__name__)


def grad_W1(X, Y, W1, b1, W2, b2):
    return W1 * 0
