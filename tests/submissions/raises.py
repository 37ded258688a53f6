"""grad_W1 raises its own error; grad_b1 makes torch raise (a shape mismatch)."""


def grad_W1(X, Y, W1, b1, W2, b2):
    raise ValueError("not derived yet")


def grad_b1(X, Y, W1, b1, W2, b2):
    return X @ Y  # (batch, n_feature) @ (batch, n_output): shapes do not fit


def grad_W2(X, Y, W1, b1, W2, b2):
    return undefined_name * 2  # noqa: F821


def huge_message(X, Y, W1, b1, W2, b2):
    raise RuntimeError("x" * 10_000_000)
