"""Fails while loading: a helper called at the top level uses a name that does not exist."""


def _setup():
    return hidden_size * 2  # noqa: F821


HIDDEN = _setup()
