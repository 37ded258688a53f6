"""Detection power of random directions: one element of a large float32 (or float64) gradient off by 1%.

``python -m benchmarks.directions [--trials N]``: the MLP of :mod:`benchmarks.generic` (W: 16,000 elements,
V: 1,000), its correct gradient in the parameters' dtype (autograd in that dtype), one random element
multiplied by 1.01, judged by ``assert_gradients_agree`` along k random directions per tensor; the share of
trials caught, by the element's size relative to the tensor's largest entry.
"""

from __future__ import annotations

import argparse
import warnings
from collections import Counter

import torch

from benchmarks.generic import mlp

EDGES = (1e-1, 1e-2, 1e-3, 0.0)


def _share(caught: int, tried: int) -> str:
    return f"{100 * caught / tried:.0f}% of {tried}" if tried else "-"


def detection(trials: int, ks: tuple[int, ...] = (64,)) -> list[list[str]]:
    from gradcheckers import GradientMismatchError, InconclusiveWarning, assert_gradients_agree, autograd_gradients

    rows = []
    for dtype in (torch.float32, torch.float64):
        loss, params = mlp(1_000, inputs=16, dtype=dtype)
        names = list(params)
        native = autograd_gradients(loss, params, names, promote=False)
        for k in ks:
            for wrong in ("W", "V"):
                caught: Counter[float] = Counter()
                tried: Counter[float] = Counter()
                false_alarms = 0
                g = torch.Generator().manual_seed(1)
                largest = float(native[wrong].abs().max())
                for trial in range(trials):
                    analytic = {n: native[n].clone() for n in names}
                    index = int(torch.randint(analytic[wrong].numel(), (1,), generator=g))
                    analytic[wrong].view(-1)[index] *= 1.01
                    edge = next(e for e in EDGES if abs(float(native[wrong].view(-1)[index])) >= e * largest)
                    tried[edge] += 1
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", InconclusiveWarning)
                        try:
                            assert_gradients_agree(loss, params, analytic, max_full_elements=0, directions=k,
                                                   seed=trial)
                        except GradientMismatchError as error:
                            caught[edge] += 1
                            false_alarms += f"the gradient of {wrong}" not in str(error)
                rows.append([str(dtype)[6:], f"{wrong} ({params[wrong].numel():,})", str(k),
                             f"{100 * sum(caught.values()) / trials:.0f}%",
                             *(_share(caught[e], tried[e]) for e in EDGES),
                             str(false_alarms)])
                print(" | ".join(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    options = parser.parse_args()
    print("| dtype | wrong tensor | k | all | >= 0.1 of largest | 0.01-0.1 | 0.001-0.01 | < 0.001 | "
          "other tensor blamed |")
    print("| --- | --- | --: | --: | --: | --: | --: | --: | --: |")
    detection(options.trials)


if __name__ == "__main__":
    main()
