"""Hostile: at import, tries to write (create or overwrite) each of TARGETS; the test fills TARGETS in."""

TARGETS = "@TARGETS@".split("|")

for target in TARGETS:
    try:
        with open(target, "w") as handle:
            handle.write("def grad_W1(*a):\n    return 'pwned'\n")
        print("wrote", target)
    except OSError as exc:
        print("could not write", target, type(exc).__name__)


def grad_W1(X, Y, W1, b1, W2, b2):
    return W1 * 0
