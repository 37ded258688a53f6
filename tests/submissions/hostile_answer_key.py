"""Hostile: removes the import blocker, then imports the reference formulas, and also reads them by path."""

import sys

sys.meta_path[:] = [finder for finder in sys.meta_path if "Blocker" not in type(finder).__name__]
try:
    from gradcheckers.models.two_layer import gradients  # noqa: F401

    print("imported the answer key")
except BaseException as exc:
    print("could not import the answer key", type(exc).__name__)
try:
    exec(open("@PATH@").read())
    print("executed the answer key")
except BaseException as exc:
    print("could not read the answer key", type(exc).__name__)


def grad_W1(X, Y, W1, b1, W2, b2):
    return W1 * 0
