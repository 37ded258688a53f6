"""Layer checks: examples per second of ``check_backward`` on the bundled layers, by reference path.

``python -m benchmarks.layers [--examples N]``: for each layer, its correct numpy backward checked (a) against
central differences of its own numpy forward (no reference: one forward call per perturbed element, 4 per
element) and (b) against its torch reference (autograd plus vmapped differences, and the forward compared).
Not part of ``benchmarks.run`` (every layer twice takes minutes on a loaded 2-core machine).
"""

from __future__ import annotations

import argparse
import time

from gradcheckers.models.layers import LAYERS


def run(examples: int = 50) -> None:
    print("| layer | numpy differences (examples/s) | torch reference (examples/s) | ratio |")
    print("| --- | --: | --: | --: |")
    for name, layer in LAYERS.items():
        rates = []
        for reference in (None, layer.reference):
            started = time.perf_counter()
            result = layer.check(reference=reference, max_examples=examples, dtypes=("float64",))
            rates.append(result.examples / (time.perf_counter() - started))
        print(f"| {name} | {rates[0]:.0f} | {rates[1]:.0f} | {rates[1] / rates[0]:.2f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.layers", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50)
    run(parser.parse_args(argv).examples)


if __name__ == "__main__":
    main()
