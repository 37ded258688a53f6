"""Benchmarks of gradcheckers, measured against one forward+backward pass and ``torch.autograd.gradcheck``.

Run them all with ``python -m benchmarks.run`` (``--quick`` for a short pass, ``--only NAME`` for one):

- :mod:`benchmarks.finite_differences`: the full finite-difference gradient of the two-layer loss, every
  method at P = 1e2 ... 1e5 parameters (issue 3, target 1).
- :mod:`benchmarks.throughput`: examples per second of the in-process property check, and where the time
  goes (target 2).
- :mod:`benchmarks.generic`: a loss gradcheckers knows nothing about: the batched full gradient against a
  per-element loop, and the detection power of random directions (target 3).
- :mod:`benchmarks.end_to_end`: ``gradcheckers check`` on one submission and ``gradcheckers grade`` on a course
  of generated submissions, end to end through the command line, with the time split (targets 4 and 5);
  :mod:`benchmarks.gate` is the gate's own stand-alone script for the same two runs.

Every figure is a median over repeats taken in the same run, interleaved so that a noisy neighbour slows
all methods alike; ratios are between numbers of the same run. Nothing here asserts a timing.
"""
