"""Hostile: reaches the grader (GRADER, a pid) through /proc: its environment, memory and standard output."""

GRADER = "@GRADER@"

for name in ("environ", "cmdline", "mem"):
    try:
        with open(f"/proc/{GRADER}/{name}", "rb") as handle:
            print("read", name, handle.read(4000))
    except OSError as exc:
        print("could not read", name, type(exc).__name__)
for fd in (1, 2):
    try:
        with open(f"/proc/{GRADER}/fd/{fd}", "w") as handle:
            handle.write("@MARKER@ W1 PASS b1 PASS W2 PASS b2 PASS score 4/4\n")
        print("wrote to the grader's fd", fd)
    except OSError as exc:
        print("could not write to fd", fd, type(exc).__name__)


def grad_W1(X, Y, W1, b1, W2, b2):
    return W1 * 0
