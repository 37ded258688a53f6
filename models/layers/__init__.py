"""The layers courses assign, each a :class:`gradcheckers.layer.Layer`: its numpy forward and backward in the
course's calling convention, its torch reference, realistic wrong variants (which must fail, at the input they
name) and differently written correct ones (which must pass).

``LAYERS`` maps each name to its layer; ``gradcheckers assignments`` lists them, and
``LAYERS["affine"].check(my_forward, my_backward)`` checks anyone's implementation.
"""

from __future__ import annotations

from gradcheckers.models.layers import elementwise, losses, normalization, recurrent, spatial

from gradcheckers.assignment import Assignment
from gradcheckers.layer import Layer

__all__ = ["LAYERS", "assignment"]

LAYERS: dict[str, Layer] = {
    layer.name: layer
    for module in (elementwise, losses, normalization, spatial, recurrent)
    for layer in module.LAYERS
}


def assignment(name: str) -> Assignment:
    """The layer ``name`` as an assignment for the gate (cached: every lookup returns the same one)."""
    if name not in _ASSIGNMENTS:
        _ASSIGNMENTS[name] = LAYERS[name].assignment()
    return _ASSIGNMENTS[name]


_ASSIGNMENTS: dict[str, Assignment] = {}


def __getattr__(name: str) -> Assignment:
    # get_assignment("conv") reads the attribute "conv" of this module (assignment._BUILTIN): each layer's
    # assignment, built on first use. Names with a dash are reachable only this way, which is the point.
    if name in LAYERS:
        return assignment(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
