"""Tests of gradcheckers.plugin, run through pytester as a user runs pytest.

Loading (entry point, -p, -p no:), checking a submission (items, failure text, summary), options and ini keys,
determinism and pytest-xdist, report files, the fixtures and marker for users' own tests, and when the summary
is written. Runs that depend on how pytest starts go through a subprocess; the rest run in-process, which
shares this process's torch import and the sandbox's fork server.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import nbformat
import pytest
import torch  # noqa: F401
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from test_report import check_junit_schema, check_report

import gradcheckers

# In-process runs put sys.modules back as they found it, and torch cannot be imported twice in one process:
# import here, once, everything the plugin imports lazily, so that every in-process run finds it loaded.
import gradcheckers.references
import gradcheckers.report
import gradcheckers.session

pytest_plugins = ["pytester"]
# pytest-benchmark warns in every in-process run with -n; that is its business, not this module's.
pytestmark = pytest.mark.filterwarnings("ignore:Benchmarks are automatically disabled")

ROOT = Path(__file__).resolve().parents[1]
SUBMISSIONS = Path(__file__).parent / "submissions"
CORRECT = Path(gradcheckers.__file__).with_name("examples") / "correct.py"
EXAMPLES = "--gradcheckers-examples=20"  # small: every run here stays within a few seconds
SEED_HEADER = re.compile(r"^gradcheckers: using --gradcheckers-seed=(\d+)$", re.MULTILINE)

SMALLEST = "batch=1, n_feature=1, n_hidden=1, n_output=1, dtype=float64, device=cpu, seed=0"
W1_SMALLEST = "batch=2, n_feature=1, n_hidden=1, n_output=1, dtype=float64, device=cpu, seed=0"
BATCH_CAUSE = "right for a batch of 1 and wrong for larger batches: the per-sample terms are not summed over the batch*"
SHAPE_HINT = ("It has one axis too many: sum the per-sample terms over the batch axis, which is the last axis if the "
              "result was transposed (e.g. (Y - Y_pred).t()).")


def reproduce(parameter: str, seed: int = 0) -> str:
    return (
        f"pytest -p gradcheckers --gradcheckers-submission=hw.py --gradcheckers-seed={seed} "
        f"--gradcheckers-examples=20 -k grad_{parameter}"
    )


# The homework's formulas (models/seed.py) under seed 0: each failure as pytest prints it ...
SEED_FAILURES = {
    "W1": [
        "*_ grad_W1 _*",
        "W1: FAILED (shape)",
        "grad_W1 returned shape (2, 1); W1 has shape (1, 1). The gradient must have exactly the parameter's shape*",
        f"Case: {W1_SMALLEST}",
        f"Likely cause: {BATCH_CAUSE}",
        f"Reproduce: {reproduce('W1')}",
    ],
    "b1": [
        "*_ grad_b1 _*",
        "b1: FAILED (shape)",
        f"grad_b1 returned shape (1, 1); b1 has shape (1,). * {SHAPE_HINT}",
        f"Case: {SMALLEST}",
        f"Reproduce: {reproduce('b1')}",
    ],
    "b2": [
        "*_ grad_b2 _*",
        "b2: FAILED (shape)",
        f"grad_b2 returned shape (1, 1); b2 has shape (1,). * {SHAPE_HINT}",
        f"Case: {SMALLEST}",
        f"Reproduce: {reproduce('b2')}",
    ],
}
# ... and the summary section, one entry per parameter in the assignment's order.
SEED_SUMMARY = [
    "*= gradcheckers =*",
    f"W1: FAILED (shape) after * cases (searching and shrinking); smallest case: {W1_SMALLEST}",
    f"    likely cause: {BATCH_CAUSE}",
    f"    reproduce: {reproduce('W1')}",
    f"b1: FAILED (shape) after 1 case (searching and shrinking); smallest case: {SMALLEST}",
    f"    reproduce: {reproduce('b1')}",
    "W2: passed (20 cases)",
    f"b2: FAILED (shape) after 1 case (searching and shrinking); smallest case: {SMALLEST}",
    f"    reproduce: {reproduce('b2')}",
    "score 1 / 4 (--gradcheckers-seed=0)",
]
CORRECT_SUMMARY = [
    "*= gradcheckers =*",
    "W1: passed (20 cases)",
    "b1: passed (20 cases)",
    "W2: passed (20 cases)",
    "b2: passed (20 cases)",
    "score 4 / 4 (--gradcheckers-seed=0)",
]


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    # The runs here must not write into the summary of the CI job running this test suite.
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture
def homework(pytester: pytest.Pytester) -> Path:
    """The homework's wrong formulas (W1, b1, b2 wrong; W2 right), saved as a student's hw.py."""
    return Path(shutil.copy(ROOT / "models" / "seed.py", pytester.path / "hw.py"))


def section(result: pytest.RunResult, title: str) -> str:
    """The text of one ``=== title ===`` section of a run's output, up to the next section line."""
    match = re.search(rf"^=+ {title} =+$\n(.*?)^=+ ", result.stdout.str(), re.MULTILINE | re.DOTALL)
    assert match is not None, f"no {title!r} section in:\n{result.stdout.str()}"
    return match.group(1)


def header_seed(result: pytest.RunResult) -> int:
    match = SEED_HEADER.search(result.stdout.str())
    assert match is not None, result.stdout.str()
    return int(match.group(1))


# -- loading ------------------------------------------------------------------------------------------------


def test_plain_pytest_loads_the_plugin_through_its_entry_point(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--gradcheckers-submission=correct", EXAMPLES)

    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        ["gradcheckers: using --gradcheckers-seed=0", "plugins: *gradcheckers-0.1.0*", *CORRECT_SUMMARY]
    )


def test_p_gradcheckers_loads_it_when_autoload_is_disabled(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile("def test_ok(): pass")

    loaded = pytester.runpytest_subprocess("-p", "gradcheckers", "--gradcheckers-seed=3")
    not_loaded = pytester.runpytest_subprocess("--gradcheckers-seed=3")

    loaded.assert_outcomes(passed=1)
    loaded.stdout.fnmatch_lines(["gradcheckers: using --gradcheckers-seed=3"])
    assert not_loaded.ret == pytest.ExitCode.USAGE_ERROR
    not_loaded.stderr.fnmatch_lines(["*error: unrecognized arguments: --gradcheckers-seed=3"])


def test_p_no_gradcheckers_disables_it(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "no:gradcheckers", "--gradcheckers-submission=correct")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*error: unrecognized arguments: --gradcheckers-submission=correct"])


def test_loading_the_plugin_imports_neither_torch_nor_hypothesis(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_lazy(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("gradcheckers")
            assert "gradcheckers.plugin" in sys.modules
            assert "torch" not in sys.modules
            assert "hypothesis" not in sys.modules
        """
    )
    # Hypothesis's own pytest plugin is disabled so that only ours is under test.
    result = pytester.runpytest_subprocess("-p", "no:hypothesispytest")

    result.assert_outcomes(passed=1)


# -- checking a submission ----------------------------------------------------------------------------------


def test_a_submission_is_collected_as_one_item_per_parameter(pytester: pytest.Pytester, homework: Path) -> None:
    result = pytester.runpytest("--gradcheckers-submission=hw.py", "--collect-only", "-q")

    result.stdout.fnmatch_lines(
        ["hw.py::grad_W1", "hw.py::grad_b1", "hw.py::grad_W2", "hw.py::grad_b2", "4 tests collected*"]
    )


def test_the_seed_formulas_fail_with_their_smallest_counterexamples(pytester: pytest.Pytester, homework: Path) -> None:
    result = pytester.runpytest("--gradcheckers-submission=hw.py", EXAMPLES)

    result.assert_outcomes(failed=3, passed=1)
    result.stdout.fnmatch_lines(
        [
            "gradcheckers: using --gradcheckers-seed=0",
            "hw.py FF.F *",
            *SEED_FAILURES["W1"],
            *SEED_FAILURES["b1"],
            *SEED_FAILURES["b2"],
            *SEED_SUMMARY,
            "FAILED hw.py::grad_W1 - W1: FAILED (shape)",
            "FAILED hw.py::grad_b1 - b1: FAILED (shape)",
            "FAILED hw.py::grad_b2 - b2: FAILED (shape)",
        ],
        consecutive=False,
    )


def test_the_printed_command_reproduces_one_failure(pytester: pytest.Pytester, homework: Path) -> None:
    command = shlex.split(reproduce("b1"))
    assert command[:3] == ["pytest", "-p", "gradcheckers"]  # -p is harmless where the plugin is auto-loaded

    result = pytester.runpytest(*command[1:])

    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(SEED_FAILURES["b1"])


def test_a_notebook_submission_is_checked_too(pytester: pytest.Pytester) -> None:
    notebook = new_notebook(
        cells=[
            new_markdown_cell("# Homework: a two-layer network"),
            new_code_cell("%matplotlib inline\nimport torch"),
            new_code_cell(CORRECT.read_text()),
            new_code_cell("raise SystemExit('the training cell: not run when the gradients are checked')"),
        ]
    )
    nbformat.write(notebook, pytester.path / "hw.ipynb")

    result = pytester.runpytest("--gradcheckers-submission=hw.ipynb", EXAMPLES, "-v")

    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["hw.ipynb::grad_W1 PASSED*", "hw.ipynb::grad_b2 PASSED*", *CORRECT_SUMMARY])


def test_a_missing_function_fails_only_its_parameter(pytester: pytest.Pytester) -> None:
    shutil.copy(SUBMISSIONS / "plugin_missing_b2.py", pytester.path / "hw.py")

    result = pytester.runpytest("--gradcheckers-submission=hw.py", EXAMPLES)

    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ grad_b2 _*",
            "b2: FAILED (missing)",
            "no function grad_b2(X, Y, W1, b1, W2, b2) and no gradients(X, Y, W1, b1, W2, b2) returning a mapping "
            "with the key 'b2'",
            f"Reproduce: {reproduce('b2')}",
            "FAILED hw.py::grad_b2 - b2: FAILED (missing)",
        ]
    )


def test_a_syntax_error_is_a_collection_error_without_our_traceback(pytester: pytest.Pytester) -> None:
    shutil.copy(SUBMISSIONS / "syntax_error.py", pytester.path / "hw.py")

    result = pytester.runpytest("--gradcheckers-submission=hw.py", "--gradcheckers-json=report.json")

    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR collecting hw.py _*",
            "cannot check the submission: */hw.py: syntax error at line 5: invalid syntax",
            "    return X.T @@ Y",
            "ERROR hw.py*",
            "*Interrupted: 1 error during collection*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    result.stdout.no_fnmatch_line("*= gradcheckers =*")
    report = json.loads((pytester.path / "report.json").read_text())
    assert report["passed"] is False
    assert report["parameters"] == {}
    assert report["load_error"].endswith(
        "/hw.py: syntax error at line 5: invalid syntax\n    return X.T @@ Y\n" + " " * 16 + "^"
    )


def test_files_beside_the_submission_are_never_imported(pytester: pytest.Pytester) -> None:
    # pytest's own collection of sub/hw.py would import sub/__init__.py and sub/conftest.py into this process:
    # the submission is untrusted, and only ever runs in the sandbox.
    sub = pytester.mkpydir("sub")
    (sub / "__init__.py").write_text("raise RuntimeError('sub/__init__.py was imported')\n")
    (sub / "conftest.py").write_text("raise RuntimeError('sub/conftest.py was imported')\n")
    shutil.copy(CORRECT, sub / "hw.py")
    pytester.makepyfile(test_project="def test_own(): pass")

    # The project's own tests run beside the check.
    result = pytester.runpytest("test_project.py", "--gradcheckers-submission=sub/hw.py", EXAMPLES, "-v")

    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["test_project.py::test_own PASSED*", "sub/hw.py::grad_W1 PASSED*"])


def test_naming_the_submission_as_a_path_too_does_not_import_it_into_pytest(pytester: pytest.Pytester) -> None:
    guard = "import sys\nif '_pytest' in sys.modules:\n    raise RuntimeError('imported into pytest')\n"
    (pytester.path / "hw.py").write_text(guard + CORRECT.read_text())

    result = pytester.runpytest("hw.py", "--gradcheckers-submission=hw.py", "--gradcheckers-examples=5")

    result.assert_outcomes(passed=4)


# -- options and ini keys -----------------------------------------------------------------------------------

ARGUMENT = "*error: argument --gradcheckers-{}: {}"
TOGETHER = "--gradcheckers-rtol and --gradcheckers-atol go together: give both or neither"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--gradcheckers-submission=nowhere.py"],
            "ERROR: --gradcheckers-submission: no such file: nowhere.py (and no bundled example of that name; *",
        ),
        (["--gradcheckers-assignment=nowhere"], "ERROR: --gradcheckers-assignment: assignment='nowhere' is neither *"),
        (["--gradcheckers-examples=0"], ARGUMENT.format("examples", "expected a positive integer, got '0'")),
        (["--gradcheckers-examples=many"], ARGUMENT.format("examples", "expected a positive integer, got 'many'")),
        (["--gradcheckers-seed=-1"], ARGUMENT.format("seed", "expected an integer in *, 'last' or 'random', got '-1'")),
        (["--gradcheckers-seed=2**32"], ARGUMENT.format("seed", "expected an integer in *, got '2**32'")),
        (["--gradcheckers-dtypes=float8"], ARGUMENT.format("dtypes", "expected a comma-separated * got 'float8'")),
        (["--gradcheckers-devices=tpu"], ARGUMENT.format("devices", "expected a comma-separated * got 'tpu'")),
        (
            ["--gradcheckers-rtol=-1", "--gradcheckers-atol=0"],
            ARGUMENT.format("rtol", "expected a non-negative number, got '-1'"),
        ),
        (
            ["--gradcheckers-rtol=0", "--gradcheckers-atol=nan"],
            ARGUMENT.format("atol", "expected a non-negative number, got 'nan'"),
        ),
        (["--gradcheckers-timeout=0"], ARGUMENT.format("timeout", "expected a positive number, got '0'")),
        (["--gradcheckers-json=."], "ERROR: --gradcheckers-json=.: is a directory, expected a file path"),
        (["--gradcheckers-markdown=."], "ERROR: --gradcheckers-markdown=.: is a directory, expected a file path"),
        (["--gradcheckers-database=a.txt"], "ERROR: --gradcheckers-database=a.txt: is a file, expected a directory"),
        (["--gradcheckers-stress=yes"], ARGUMENT.format("stress", "ignored explicit argument 'yes'")),
        (["--gradcheckers-allow-autograd=yes"], ARGUMENT.format("allow-autograd", "ignored explicit argument 'yes'")),
        (["--gradcheckers-rtol=1e-3"], f"ERROR: {TOGETHER}"),
        (["--gradcheckers-atol=1e-3"], f"ERROR: {TOGETHER}"),
    ],
)
def test_an_invalid_option_is_a_one_line_usage_error(
    pytester: pytest.Pytester, arguments: list[str], message: str
) -> None:
    pytester.makefile(".txt", a="")

    result = pytester.runpytest("--gradcheckers-submission=correct", *arguments)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_ini_keys_are_honoured(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ngradcheckers_submission = correct\ngradcheckers_examples = 30\ngradcheckers_seed = 7\n")

    result = pytester.runpytest()

    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        ["gradcheckers: using --gradcheckers-seed=7", "W1: passed (30 cases)", "score 4 / 4 (--gradcheckers-seed=7)"]
    )


def test_the_command_line_overrides_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ngradcheckers_seed = 7\n")
    pytester.makepyfile("def test_ok(): pass")

    result = pytester.runpytest("--gradcheckers-seed=8")

    result.stdout.fnmatch_lines(["gradcheckers: using --gradcheckers-seed=8"])


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("gradcheckers_examples = 0", "ERROR: ini option gradcheckers_examples: expected a positive integer, got '0'"),
        ("gradcheckers_seed = -3", "ERROR: ini option gradcheckers_seed: expected an integer in *, got '-3'"),
        ("gradcheckers_dtypes = float64,int8", "ERROR: ini option gradcheckers_dtypes: expected a comma-separated *"),
        ("gradcheckers_rtol = 1e-3", f"ERROR: {TOGETHER}"),
    ],
)
def test_ini_values_are_validated_before_anything_runs(pytester: pytest.Pytester, key: str, message: str) -> None:
    pytester.makeini(f"[pytest]\n{key}\n")
    pytester.makepyfile("def test_ok(): pass")  # no submission: the value is refused all the same

    result = pytester.runpytest()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_the_header_shows_the_seed_only_when_it_matters(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok(): pass")

    seeded = pytester.runpytest("--gradcheckers-seed=1234")
    plain = pytester.runpytest()

    seeded.stdout.fnmatch_lines(["gradcheckers: using --gradcheckers-seed=1234"])
    plain.stdout.no_fnmatch_line("gradcheckers:*")


def test_seed_last_reuses_the_seed_that_random_drew(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok(): pass")

    drawn = header_seed(pytester.runpytest("--gradcheckers-seed=random"))
    again = header_seed(pytester.runpytest("--gradcheckers-seed=last"))

    assert again == drawn


def test_the_cache_provider_is_optional(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok(): pass")

    result = pytester.runpytest("-p", "no:cacheprovider", "--gradcheckers-seed=last")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["gradcheckers: using --gradcheckers-seed=0"])


# -- determinism and pytest-xdist ---------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_failure_text(pytester: pytest.Pytester, homework: Path) -> None:
    arguments = ("--gradcheckers-submission=hw.py", EXAMPLES, "--gradcheckers-seed=5")
    first, second = pytester.runpytest(*arguments), pytester.runpytest(*arguments)

    first.assert_outcomes(failed=3, passed=1)
    assert section(first, "FAILURES") == section(second, "FAILURES")
    assert section(first, "gradcheckers") == section(second, "gradcheckers")


def test_xdist_gives_the_same_verdicts_counterexamples_and_summary(pytester: pytest.Pytester, homework: Path) -> None:
    serial = pytester.runpytest("--gradcheckers-submission=hw.py", EXAMPLES)
    parallel = pytester.runpytest("--gradcheckers-submission=hw.py", EXAMPLES, "-n", "2", "--junitxml=junit.xml")

    parallel.assert_outcomes(failed=3, passed=1)
    # Failures arrive in the order the workers finish them: check each one on its own.
    for lines in SEED_FAILURES.values():
        parallel.stdout.fnmatch_lines(lines)
    # The controller gathers the results from the reports, and writes the same summary.
    parallel.stdout.fnmatch_lines(SEED_SUMMARY)
    assert section(parallel, "gradcheckers") == section(serial, "gradcheckers")
    # The verdicts also land in the JUnit XML, as failures with their messages; the file is valid against
    # Jenkins' schema (no <properties> inside a <testcase>, no "None" for a passed one).
    text = (pytester.path / "junit.xml").read_text()
    check_junit_schema(text)
    cases = {case.get("name"): case for case in ET.fromstring(text).iter("testcase")}
    assert {name: case.find("failure") is not None for name, case in cases.items()} == {
        "grad_W1": True, "grad_b1": True, "grad_W2": False, "grad_b2": True,
    }  # fmt: skip
    assert "b1: FAILED (shape)" in (cases["grad_b1"].find("failure").text or "")  # type: ignore[union-attr]
    assert "property" not in text and "None" not in text


def test_xdist_workers_use_the_seed_the_controller_drew(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        import pathlib

        import pytest
        from hypothesis import given, strategies as st

        @pytest.mark.parametrize("n", range(4))
        @given(st.integers())
        def test_seeded(n, x):
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            pathlib.Path(f"{worker}.seed").write_text(str(test_seeded._hypothesis_internal_use_seed))
        """
    )

    result = pytester.runpytest("-n", "2", "--gradcheckers-seed=random")

    result.assert_outcomes(passed=4)
    seeds = {path.name: path.read_text() for path in pytester.path.glob("*.seed")}
    assert seeds == {"gw0.seed": str(header_seed(result)), "gw1.seed": str(header_seed(result))}


# -- report files -------------------------------------------------------------------------------------------


def test_json_and_markdown_reports(pytester: pytest.Pytester, homework: Path) -> None:
    result = pytester.runpytest(
        "--gradcheckers-submission=hw.py",
        EXAMPLES,
        "--gradcheckers-json=out/report.json",
        "--gradcheckers-markdown=out/summary.md",
    )

    result.assert_outcomes(failed=3, passed=1)
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    assert (report["submission"], report["passed"], report["seed"], report["score"]) == ("hw.py", False, 0, 1.0)
    assert list(report["parameters"]) == ["W1", "b1", "W2", "b2"]
    for entry in report["parameters"].values():
        assert {"passed", "examples", "reason", "message", "counterexample"} <= entry.keys()
    w2, b1 = report["parameters"]["W2"], report["parameters"]["b1"]
    assert (w2["passed"], w2["examples"], w2["reason"], w2["counterexample"]) == (True, 20, None, None)
    assert (b1["passed"], b1["examples"], b1["reason"]) == (False, 1, "shape")
    assert b1["message"].startswith("grad_b1 returned shape (1, 1); b1 has shape (1,).")
    assert b1["counterexample"] == {
        "batch": 1, "n_feature": 1, "n_hidden": 1, "n_output": 1,
        "dtype": "float64", "device": "cpu", "seed": 0, "scale": 1.0, "regime": "normal",
    }  # fmt: skip
    markdown = (pytester.path / "out" / "summary.md").read_text().splitlines()
    assert markdown[0] == "## ❌ gradcheckers: `hw.py`"
    assert "| `W2` | pass | 20 |  |" in markdown
    assert f"| `b1` | **fail** (shape) | 1 | {SMALLEST} |" in markdown


def test_the_json_report_has_every_field_of_the_command_lines(pytester: pytest.Pytester) -> None:
    (pytester.path / "noisy.py").write_text(CORRECT.read_text() + "\nprint('hello from the submission')\n")
    result = pytester.runpytest("--gradcheckers-submission=noisy.py", EXAMPLES, "--gradcheckers-json=report.json",
                                "-n", "2")
    result.assert_outcomes(passed=4)
    report = json.loads((pytester.path / "report.json").read_text())
    check_report(report)  # the README's schema, the one the command line's reports are checked against
    assert report["load_reason"] is None and "hello from the submission" in report["output"]
    assert report["timings"]["submission_code"] > 0 and report["timings"]["hypothesis_and_oracles"] > 0
    assert not (pytester.path / ".hypothesis").exists()  # a gate run leaves nothing in the current folder


def test_a_submission_that_cannot_be_read_has_a_load_reason(pytester: pytest.Pytester) -> None:
    (pytester.path / "broken.py").write_text("def grad_W1(:\n")
    result = pytester.runpytest("--gradcheckers-submission=broken.py", "--gradcheckers-json=report.json")
    assert result.ret != 0
    report = json.loads((pytester.path / "report.json").read_text())
    check_report(report)
    assert (report["load_reason"], report["parameters"], report["passed"]) == ("syntax", {}, False)


def test_markdown_goes_to_the_github_step_summary_as_the_command_lines_does(
    pytester: pytest.Pytester, homework: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = pytester.path / "step_summary.md"
    summary.write_text("previous step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.runpytest("--gradcheckers-submission=hw.py", EXAMPLES)  # appended even without the option
    pytester.runpytest("--gradcheckers-submission=hw.py", EXAMPLES, "--gradcheckers-markdown=summary.md")
    text = summary.read_text()
    written = (pytester.path / "summary.md").read_text()
    assert text == "previous step\n" + written + written and written.startswith("## ❌ gradcheckers: `hw.py`")


# -- fixtures and the marker, for users' own tests ----------------------------------------------------------


def test_fixtures_and_marker_in_a_users_own_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        import torch

        from gradcheckers import CheckSettings, References

        SMALL = {"batch": (1, 3), "n_feature": (1, 3), "n_hidden": (1, 3), "n_output": (1, 2)}

        @pytest.mark.gradcheckers(size_bounds=SMALL)
        def test_fixtures(gradcheckers_case, gradcheckers_tensors, gradcheckers_references, gradcheckers_settings):
            assert isinstance(gradcheckers_settings, CheckSettings)
            assert gradcheckers_settings.seed == 11
            sizes = gradcheckers_case.sizes
            assert 1 <= sizes.batch <= 3 and 1 <= sizes.n_output <= 2
            assert sorted(gradcheckers_tensors) == ["W1", "W2", "X", "Y", "b1", "b2"]
            assert gradcheckers_tensors["X"].shape == (sizes.batch, sizes.n_feature)
            assert isinstance(gradcheckers_references, References)
            for name in ("W1", "b1", "W2", "b2"):
                autograd = gradcheckers_references.autograd[name]
                assert autograd.shape == gradcheckers_tensors[name].shape
                torch.testing.assert_close(autograd, gradcheckers_references.finite_differences[name])

        @pytest.mark.gradcheckers(max_examples=7, dtypes=("float32",))
        def test_marker(gradcheckers_settings, gradcheckers_case):
            assert gradcheckers_settings.max_examples == 7
            assert gradcheckers_settings.dtypes == ("float32",)
            assert gradcheckers_case.dtype == "float32"

        def test_without_marker(gradcheckers_settings):
            assert gradcheckers_settings.max_examples == 100
            assert gradcheckers_settings.dtypes == ("float64", "float32")
        """
    )

    result = pytester.runpytest("--strict-markers", "--gradcheckers-seed=11")
    markers = pytester.runpytest("--markers")

    result.assert_outcomes(passed=3)
    markers.stdout.fnmatch_lines(["@pytest.mark.gradcheckers(**settings): per-test CheckSettings *"])


def test_a_given_test_with_the_public_strategies_is_seeded_from_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from hypothesis import given, settings

        import gradcheckers
        from gradcheckers import strategies

        @settings(max_examples=5, database=None)
        @given(strategies.cases())
        def test_my_gradient(case):
            with open("cases.txt", "a") as log:
                print(case, file=log)
            X = gradcheckers.get_assignment().tensors(case)["X"].double()
            W = X.new_ones(X.shape[1], 2)
            gradcheckers.assert_gradients_agree(
                lambda W: (X @ W).pow(2).sum(), {"W": W}, {"W": 2 * X.T @ (X @ W)}
            )
        """
    )

    def drawn(seed: int) -> list[str]:
        log = pytester.path / "cases.txt"
        log.unlink(missing_ok=True)
        pytester.runpytest(f"--gradcheckers-seed={seed}").assert_outcomes(passed=1)
        return log.read_text().splitlines()

    first, again, other = drawn(5), drawn(5), drawn(6)

    assert len(first) >= 5
    assert first == again
    assert first != other


# -- the terminal summary -----------------------------------------------------------------------------------


def test_no_summary_when_nothing_was_checked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_ok(): pass")

    result = pytester.runpytest("--gradcheckers-seed=3")

    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*gradcheckers =*")
    result.stdout.no_fnmatch_line("score *")


def test_the_case_fixture_respects_the_assignment_s_fixed_and_minimum_sizes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.gradcheckers(assignment="softmax-classifier")
        def test_softmax(gradcheckers_case, gradcheckers_references):
            assert gradcheckers_case.sizes.n_output >= 2
            assert set(gradcheckers_references.autograd) == {"W1", "b1", "W2", "b2"}

        @pytest.mark.gradcheckers(assignment="logistic-regression")
        def test_logistic(gradcheckers_case):
            assert (gradcheckers_case.sizes.n_hidden, gradcheckers_case.sizes.n_output) == (1, 1)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_case_fixture_draws_a_layer_assignment_s_named_sizes_and_hyperparameters(pytester: pytest.Pytester
                                                                                     ) -> None:
    # Issue 11: the fixture assumed the seed's four sizes (batch, n_feature, n_hidden, n_output).
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.gradcheckers(assignment="conv")
        def test_conv(gradcheckers_case, gradcheckers_tensors, gradcheckers_references):
            sizes = gradcheckers_case.sizes
            assert set(sizes.names) == {"N", "C", "H", "W", "F", "K", "stride", "pad"}
            assert sizes.stride in (1, 2) and sizes.pad in (0, 1) and 1 <= sizes.K <= 3
            assert sorted(gradcheckers_tensors) == ["b", "dout", "w", "x"]
            assert gradcheckers_tensors["x"].shape == (sizes.N, sizes.C, sizes.H, sizes.W)
            assert set(gradcheckers_references.autograd) == {"x", "w", "b"}

        @pytest.mark.gradcheckers(assignment="dropout", size_bounds={"N": (3, 3)})
        def test_dropout(gradcheckers_case, gradcheckers_tensors):
            sizes = gradcheckers_case.sizes
            assert sizes.N == 3 and 0.25 <= sizes.p <= 0.75
            assert gradcheckers_tensors["x"].shape == (3, sizes.D)

        @pytest.mark.gradcheckers(assignment="conv")
        @pytest.mark.parametrize("run", range(8))
        def test_conv_again(gradcheckers_case, run):
            with open(f"case-{run}.txt", "w") as log:
                print(gradcheckers_case, file=log)
        """
    )
    first = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--gradcheckers-seed=4")
    first.assert_outcomes(passed=10)
    drawn = [(pytester.path / f"case-{run}.txt").read_text() for run in range(8)]
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--gradcheckers-seed=4").assert_outcomes(passed=10)
    assert drawn == [(pytester.path / f"case-{run}.txt").read_text() for run in range(8)]  # the same on every run
    assert len(set(drawn)) > 1  # and not the same case for every test


def test_a_layer_submission_s_forward_is_an_item_of_its_own_and_fails_alone(pytester: pytest.Pytester) -> None:
    # The gate's forward verdict through the plugin: the gradients pass (judged against the reference forward's),
    # the forward does not; it is not scored.
    shutil.copy(ROOT / "tests" / "submissions" / "layer_affine_wrong_forward.py", pytester.path / "hw.py")
    result = pytester.runpytest("--gradcheckers-submission=hw.py", "--gradcheckers-assignment=affine", EXAMPLES,
                                "--gradcheckers-json=report.json")

    result.assert_outcomes(failed=1, passed=3)
    result.stdout.fnmatch_lines(["forward: FAILED (mismatch) after *", "x: passed *", "score 3 / 3 *",
                                 "FAILED hw.py::forward - forward: FAILED (mismatch)"], consecutive=False)
    report = json.loads((pytester.path / "report.json").read_text())
    assert set(report["parameters"]) == {"x", "w", "b"} and not report["passed"]
    assert not report["forward"]["passed"] and report["forward"]["reason"] == "mismatch"
