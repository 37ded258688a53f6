"""Hostile: reaches autograd around the refusals; one function per bypass found by a hostile tester."""

import torch


def _loss(X, Y, W1, b1, W2, b2):
    return ((Y - (torch.sigmoid(X @ W1 + b1) @ W2 + b2)) ** 2).sum()


def grad_W1(X, Y, W1, b1, W2, b2):
    """A fresh engine object, not the guarded one."""
    W1 = W1.clone().requires_grad_(True)
    loss = _loss(X, Y, W1, b1, W2, b2)
    engine = torch._C._ImperativeEngine()
    return engine.run_backward((loss,), (torch.ones_like(loss),), False, False, (W1,), False, False)[0]


def grad_b1(X, Y, W1, b1, W2, b2):
    """C-level forward-mode AD, one column at a time."""
    out = torch.zeros_like(b1)
    for i in range(b1.numel()):
        level = torch._C._enter_dual_level()
        try:
            tangent = torch.zeros_like(b1)
            tangent[i] = 1
            dual = torch._make_dual(b1, tangent, level=level)
            loss = _loss(X, Y, W1, dual, W2, b2)
            out[i] = torch._unpack_dual(loss, level=level)[1]
        finally:
            torch._C._exit_dual_level(level=level)
    return out


def grad_W2(X, Y, W1, b1, W2, b2):
    """The guard's own record, emptied through the refusal's closure."""
    W2 = W2.clone().requires_grad_(True)
    loss = _loss(X, Y, W1, b1, W2, b2)
    refusal = torch.autograd.grad
    try:
        result = refusal(loss, W2)[0]
    except BaseException:
        result = None
    for cell in refusal.__closure__ or ():
        owner = getattr(cell.cell_contents, "__self__", None)
        if owner is not None and hasattr(owner, "used"):
            owner.used.clear()
    return result


def grad_b2(X, Y, W1, b1, W2, b2):
    """The backward graph's nodes, called by hand."""
    b2 = b2.clone().requires_grad_(True)
    P = torch.sigmoid(X @ W1 + b1) @ W2 + b2
    dP = -2 * (Y - P)
    node = P.grad_fn  # AddBackward0: its second input is b2
    grads = node(dP)
    return grads[1].sum(0) if grads[1].dim() > 1 else grads[1]
