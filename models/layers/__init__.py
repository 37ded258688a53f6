"""The layers courses assign, each a :class:`gradcheckers.backward.Layer`: its numpy forward and backward in the
course's calling convention, its torch reference, realistic wrong variants (which must fail, at the input they
name) and differently written correct ones (which must pass).

``LAYERS`` maps each name to its layer; ``gradcheckers assignments`` lists them, and
``LAYERS["affine"].check(my_forward, my_backward)`` checks anyone's implementation.
"""

from __future__ import annotations

from gradcheckers.models.layers import elementwise, losses, normalization, recurrent, spatial

from gradcheckers.backward import Layer

__all__ = ["LAYERS"]

LAYERS: dict[str, Layer] = {
    layer.name: layer
    for module in (elementwise, losses, normalization, spatial, recurrent)
    for layer in module.LAYERS
}
