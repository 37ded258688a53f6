"""Run the benchmarks and print their tables: ``python -m benchmarks.run [--quick] [--only NAME] [--threads N]``.

NAME is one of ``fd`` (target 1), ``throughput`` (2), ``generic`` (3), ``gate`` (4 and 5). Every run ends with
the summary table of the performance targets (issue 14), each with its figure and "met"/"NOT met".
``--targets`` runs only what that table needs (no detection trials, no course grading, no peak memory, no
methods the table does not compare); ``--readme`` does the same and writes the table into the README's
performance section, so that regenerating it is one command, ``python -m benchmarks.run --readme``.
``--quick`` takes about a minute: fewer repeats and sizes, peak memory only where cheap. The full run takes 8
to 11 minutes on a 2-core machine, most of it in gradcheck's slow mode and the per-element loops at P = 1e4,
the detection trials and grading 300 submissions. Other processes on the machine slow the 2-thread figures
most; compare with ``--threads 1``.
"""

from __future__ import annotations

import argparse
import sys
import time

BENCHMARKS = ("fd", "throughput", "generic", "gate")  # gate: targets 4 and 5 (benchmarks/end_to_end.py)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats (a minute or two)")
    parser.add_argument("--only", choices=BENCHMARKS, action="append", help="run only this one (repeatable)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--readme", action="store_true",
                        help="only what the summary table needs (as --targets), then write the table into README.md")
    parser.add_argument("--targets", action="store_true",
                        help="only what the summary table needs (no detection trials, course grading or peak memory)")
    options = parser.parse_args(argv)
    targets_only = options.targets or options.readme

    import torch

    if options.threads:
        torch.set_num_threads(options.threads)
    from benchmarks._harness import heading, machine

    chosen = options.only or list(BENCHMARKS)
    started = time.perf_counter()
    before = machine()
    from benchmarks.summary import oversubscribed

    busy = oversubscribed()
    figures: dict[str, object] = {}
    print(f"# gradcheckers benchmarks{' (quick)' if options.quick else ''}\n")
    print(f"Machine: {before}.")
    print("Times are medians over interleaved repeats; ratios are between figures of this run.")
    if "fd" in chosen:
        from benchmarks import finite_differences

        figures["fd"] = finite_differences.run(quick=options.quick, threads=options.threads, targets=targets_only)
    if "throughput" in chosen:
        from benchmarks import throughput

        figures["throughput"] = throughput.run(quick=options.quick)
    if "generic" in chosen:
        from benchmarks import generic

        figures["generic"] = generic.run(quick=options.quick, threads=options.threads, detect=not targets_only)
    if "gate" in chosen:
        from benchmarks import end_to_end

        figures["gate"] = end_to_end.run(quick=options.quick, course_too=not targets_only)
    after = machine()
    busy = busy or oversubscribed()
    from benchmarks import summary

    heading("Summary: the performance targets (issue 14)")
    command = " ".join(["python -m benchmarks.run", *(sys.argv[1:] if argv is None else argv)])
    text = summary.render(summary.rows(figures), before, after, command, time.perf_counter() - started, busy)
    print(text)
    if options.readme:
        summary.write_readme(text)
        print(f"(written to {summary.README.name})")
    print(f"\nDone in {time.perf_counter() - started:.0f} s. Machine at the end: {after}.")


if __name__ == "__main__":
    main()
