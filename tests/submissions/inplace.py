"""Modifies inputs in place: grad_W1 scales X, grad_b1 bumps W1 through +=, grad_W2 writes a slice of b2."""


def grad_W1(X, Y, W1, b1, W2, b2):
    X.mul_(2)
    return X.T @ X


def grad_b1(X, Y, W1, b1, W2, b2):
    W1 += 1
    return b1 * 0


def grad_W2(X, Y, W1, b1, W2, b2):
    b2[0] = 7.0
    return W2 * 0


def grad_b2(X, Y, W1, b1, W2, b2):
    return b2 * 0  # leaves everything alone
