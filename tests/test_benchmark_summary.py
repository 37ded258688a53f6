"""benchmarks/summary.py: the issue's table of targets from one run's figures (what `--readme` writes)."""

from __future__ import annotations

from benchmarks.generic import FLOOR, LOOP4
from benchmarks.summary import render, rows


def test_the_generic_rows_give_the_floor_beside_the_ratio() -> None:
    generic = {1_000: {"assert_gradients_agree": 1.2, LOOP4: 2.0, FLOOR: 1.0},
               10_000: {"assert_gradients_agree": 12.0, LOOP4: 10.0, FLOOR: 11.0, "gradcheck slow": 6.0}}
    cells = [row.cells() for row in rows({"generic": generic})]
    assert cells[0][1:] == ["0.6× (floor 0.50×; ours 1.20× the floor)", "≤ 0.25×", "NOT met"]
    assert cells[1][1:] == ["1.2× (floor 1.10×; ours 1.09× the floor)", "≤ 0.25×", "NOT met"]
    assert cells[2][1:] == ["2× (floor 1.83×; ours 1.09× the floor)", "≤ 0.1×", "NOT met"]


def test_rows_not_measured_say_so_and_the_throughput_row_gives_the_cpu_rate() -> None:
    throughput = {"examples_per_second": 850.0, "hypothesis_only_per_second": 1200.0,
                  "examples_per_cpu_second": 900.0, "hypothesis_only_per_cpu_second": 2000.0}
    cells = {row.what: row.cells() for row in rows({"throughput": throughput})}
    assert cells["in-process property check (examples/s)"][1:] == [
        "850/s (Hypothesis alone 1,200/s; per CPU second 900/s)", "≥ 800/s", "met"]
    assert cells["structure-aware full FD ÷ one fwd+bwd, P=10,404"][1:] == ["—", "≤ 8×", "not measured"]


def test_the_rendered_table_names_the_command_and_its_duration() -> None:
    text = render(rows({}), "machine A", "machine B", "python -m benchmarks.run --readme", 540.0)
    assert text.startswith("Measured by `python -m benchmarks.run --readme` (9 minutes): medians of interleaved")
    assert "Machine at the start: machine A.\nMachine at the end: machine B." in text
