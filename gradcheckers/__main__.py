"""``python -m gradcheckers``: the command line (see :mod:`gradcheckers.cli`)."""

from gradcheckers.cli import run

run()
