"""The networks under test and their analytic gradients.

``models.two_layer`` holds the seed assignment's two-layer network, its loss and the correct gradient
formulas; ``models.seed`` keeps the assignment's original formulas as the canonical wrong submission.
"""
