"""Tests of gradcheckers.report: the Gradescope, JUnit and Markdown writers, on report dicts and through the CLI.

The validators here (the README's JSON schema, Gradescope's ``results.json`` schema, JUnit XML) are shared with
``test_cli.py`` and ``test_grade.py``, which check every report the command line writes against them.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from gradcheckers import report as writers

SUBMISSIONS = Path(__file__).parent / "submissions"
PARAMETERS = ("W1", "b1", "W2", "b2")
REASONS = {"mismatch", "shape", "non-finite", "error", "timeout", "memory", "missing", "forbidden", "mutated-input"}
# Gradescope's documented results.json (gradescope-autograders.readthedocs.io, "Autograder Specifications").
GRADESCOPE_VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}
GRADESCOPE_TOP = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
                  "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
GRADESCOPE_TEST = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format", "tags",
                   "visibility", "extra_data"}
GITHUB_SUMMARY_LIMIT = 1024 * 1024


# --- validators ------------------------------------------------------------------------------------------------


def _is(value: object, *kinds: type) -> bool:
    """isinstance, except that a bool is not a number here (JSON's true is not 1)."""
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def check_report(data: Mapping[str, Any]) -> None:
    """Assert that ``data`` follows the JSON report schema documented in the README."""
    types: dict[str, tuple[type, ...]] = {
        "submission": (str,), "assignment": (str,), "passed": (bool,), "seed": (int,), "settings": (dict,),
        "load_error": (str, type(None)), "load_reason": (str, type(None)), "score": (int, float),
        "max_score": (int, float), "parameters": (dict,), "output": (str,), "timings": (dict,),
        "internal_error": (str, type(None)), "cell_notes": (list,),
    }
    for key, kinds in types.items():
        assert key in data, f"the report has no {key!r}"
        assert _is(data[key], *kinds), f"{key}={data[key]!r}: expected {kinds}"
    settings = data["settings"]
    assert _is(settings["examples"], int) and all(_is(d, str) for d in settings["dtypes"]), settings
    assert settings["devices"] is None or all(_is(d, str) for d in settings["devices"]), settings
    assert _is(settings["stress"], bool), settings
    assert all(settings[k] is None or _is(settings[k], int, float) for k in ("rtol", "atol")), settings
    assert all(_is(v, int, float) for v in data["timings"].values()), data["timings"]
    assert all(_is(note, str) for note in data["cell_notes"]), data["cell_notes"]
    if data["assignment"].startswith("two-layer"):  # the seed's parameters; other assignments name their own
        assert set(data["parameters"]) <= set(PARAMETERS), data["parameters"].keys()
    for name, result in data["parameters"].items():
        assert name.isidentifier(), name
        check_parameter(name, result, seed_sizes=data["assignment"].startswith("two-layer"))
    forward = data.get("forward")  # null, or a verdict shaped like a parameter's (layer assignments)
    if forward is not None:
        check_parameter("forward", forward, seed_sizes=False)
    if data["load_error"] is not None:
        assert data["parameters"] == {} and not data["passed"]
    else:
        assert data["passed"] == (data["internal_error"] is None and bool(data["parameters"])
                                  and all(r["passed"] for r in data["parameters"].values())
                                  and (forward is None or forward["passed"]))
    assert 0 <= data["score"] <= data["max_score"]
    json.dumps(data, allow_nan=False)  # strict JSON: no NaN or infinities


def check_parameter(name: str, result: Mapping[str, Any], seed_sizes: bool = True) -> None:
    """Assert that one entry of ``parameters`` follows the schema (a failure carries a valid counterexample).

    ``seed_sizes``: the counterexample has the seed's four documented sizes; other assignments' counterexamples
    name their own sizes and hyperparameters, each a number, string or boolean."""
    where = f"parameters[{name!r}]"
    assert _is(result["passed"], bool) and _is(result["examples"], int) and _is(result["inconclusive"], int), result
    assert result["examples"] >= 0 and result["inconclusive"] >= 0, result
    assert result["diagnosis"] is None or _is(result["diagnosis"], str), result
    if result["passed"]:
        assert result["reason"] is None and result["counterexample"] is None, f"{where} passed with {result}"
        return
    assert result["reason"] in REASONS, f"{where}: reason {result['reason']!r} is not one of {sorted(REASONS)}"
    assert _is(result["message"], str) and result["message"].strip(), f"{where} failed without a message"
    case = result["counterexample"]
    if result["reason"] == "missing":  # no function to call, so no case: the README's one exception
        assert case is None, f"{where}: {case}"
        return
    assert isinstance(case, dict), f"{where} failed without a counterexample: {result}"
    for key in ("batch", "n_feature", "n_hidden", "n_output", "seed") if seed_sizes else ("seed",):
        assert _is(case.get(key), int) and case[key] >= 0, f"{where}.counterexample.{key}={case.get(key)!r}"
    for key, value in case.items():
        assert key.isidentifier() and _is(value, int, float, str, bool), f"{where}.counterexample.{key}={value!r}"
    assert _is(case.get("dtype"), str) and _is(case.get("device"), str), case
    assert _is(case.get("scale"), int, float), case
    worst = result["worst"]
    if worst is not None:
        assert all(_is(i, int) for i in worst["index"]), worst
        for key in ("analytic", "autograd", "finite_differences", "fd_error", "allowed"):
            assert _is(worst[key], int, float) and math.isfinite(worst[key]), worst


def check_gradescope(data: Mapping[str, Any], weights: Mapping[str, float] | None = None) -> None:
    """Assert that ``data`` is a valid Gradescope results.json: one test per parameter, max_score = its weight."""
    assert set(data) <= GRADESCOPE_TOP, set(data) - GRADESCOPE_TOP
    assert "score" in data or "tests" in data, "Gradescope needs a top-level score or scored tests"
    assert "score" not in data or _is(data["score"], int, float)
    for key in ("visibility", "stdout_visibility"):
        assert data.get(key, "visible") in GRADESCOPE_VISIBILITY, data[key]
    assert _is(data.get("output", ""), str)
    for test in data.get("tests", []):
        assert set(test) <= GRADESCOPE_TEST, set(test) - GRADESCOPE_TEST
        assert _is(test["score"], int, float) and _is(test["max_score"], int, float), test
        assert 0 <= test["score"] <= test["max_score"], test
        assert test["status"] in {"passed", "failed"}, test
        assert _is(test["output"], str) and _is(test.get("name", ""), str) and _is(test.get("number", ""), str)
        assert test.get("visibility", "visible") in GRADESCOPE_VISIBILITY, test
        assert (test["status"] == "passed") == (test["score"] == test["max_score"] > 0) or test["max_score"] == 0
    if data.get("tests") and "score" in data:
        assert data["score"] == pytest.approx(sum(t["score"] for t in data["tests"]))
    for test in data.get("tests", []):
        if weights is not None and test["name"].startswith("gradient of "):  # not "the forward (not scored)"
            parameter = test["name"].split()[-1]  # "gradient of W1"
            assert test["max_score"] == weights.get(parameter, 1.0), test


# Jenkins' JUnit schema, the one CI servers validate with: junit-10.xsd (MIT licence, Gregory Boissinot, from the
# xunit plugin), vendored unchanged from pytest's own test suite (testing/example_scripts/ in pytest's sdist).
JUNIT_XSD = Path(__file__).parent / "schemas" / "junit-10.xsd"


@functools.cache
def _junit_schema() -> Any:
    import xmlschema

    return xmlschema.XMLSchema(str(JUNIT_XSD))


def check_junit_schema(text: str) -> None:
    """Assert that ``text`` is valid against junit-10.xsd (raises with the offending element otherwise)."""
    _junit_schema().validate(text)


def check_junit(text: str, reports: list[Mapping[str, Any]]) -> ET.Element:
    """Assert that ``text`` is JUnit XML valid against junit-10.xsd, with one testcase per checked parameter and
    one failure per failing one."""
    check_junit_schema(text)
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == len(reports)
    for suite, data in zip(suites, reports):
        cases = suite.findall("testcase")
        assert suite.get("timestamp") and suite.get("time") is not None
        if data["load_error"] is not None:
            assert [c.get("name") for c in cases] == ["load"] and cases[0].find("error") is not None
            continue
        # A layer's forward is a testcase of its own, named "forward", before the parameters' grad_<p>.
        verdicts = {**({"forward": data["forward"]} if data.get("forward") else {}),
                    **{f"grad_{p}": r for p, r in data["parameters"].items()}}
        internal = ["internal"] if data.get("internal_error") else []
        assert [c.get("name") for c in cases] == [*internal, *verdicts]
        cases = cases[len(internal):]
        assert all("." not in (c.get("classname") or ".") and "/" not in (c.get("classname") or "/") for c in cases)
        failing = {c.get("name") for c in cases if c.find("failure") is not None}
        assert failing == {label for label, r in verdicts.items() if not r["passed"]}
        assert suite.get("failures") == str(len(failing)) and suite.get("tests") == str(len(cases) + len(internal))
        for case in cases:
            failure = case.find("failure")
            if failure is not None:
                assert failure.get("type") == verdicts[case.get("name", "")]["reason"]
    return root


# --- report dicts to write from ------------------------------------------------------------------------------


def parameter(reason: str | None = None, message: str = "", **case: Any) -> dict[str, Any]:
    if reason is None:
        return {"passed": True, "examples": 20, "inconclusive": 0, "reason": None, "message": None,
                "counterexample": None, "worst": None, "diagnosis": None}
    counterexample = {"batch": 2, "n_feature": 1, "n_hidden": 1, "n_output": 1, "dtype": "float64",
                      "device": "cpu", "seed": 0, "scale": 1.0, **case}
    return {"passed": False, "examples": 3, "inconclusive": 0, "reason": reason,
            "message": message or f"grad is wrong ({reason})",
            "counterexample": None if reason == "missing" else counterexample, "worst": None, "diagnosis": None}


def sample_report(reasons: Mapping[str, str | None] | None = None, *, load_error: str | None = None,
                  output: str = "", message: str = "") -> dict[str, Any]:
    reasons = {p: None for p in PARAMETERS} if reasons is None else reasons
    params = {} if load_error else {p: parameter(r, message) for p, r in reasons.items()}
    return {
        "submission": "homework.py", "assignment": "two-layer-sigmoid", "seed": 0,
        "passed": not load_error and all(r["passed"] for r in params.values()),
        "settings": {"examples": 20, "dtypes": ["float64", "float32"], "devices": None, "stress": False,
                     "rtol": None, "atol": None},
        "load_error": load_error, "load_reason": "syntax" if load_error else None,
        "score": float(sum(r["passed"] for r in params.values())), "max_score": 4.0,
        "parameters": params, "output": output, "cell_notes": [], "timings": {"worker_start": 0.01},
        "internal_error": None, "started": "2026-11-30T21:00:00+00:00",
    }


MIXED = {"W1": None, "b1": "shape", "W2": "mismatch", "b2": None}


def test_the_validators_accept_the_documented_report_and_reject_broken_ones() -> None:
    check_report(sample_report(MIXED))
    check_report(sample_report(load_error="syntax error at line 5"))
    broken: list[dict[str, Any]] = []
    for change in (
        {"passed": 1},
        {"seed": "0"},
        {"parameters": {"W1": {**parameter("shape"), "reason": "wrong"}}},
        {"parameters": {"W1": {**parameter("shape"), "counterexample": None}}},
        {"parameters": {"W1": {**parameter("shape", batch=2.0)}}},
        {"parameters": {"Z9": parameter()}},
    ):
        broken.append({**sample_report(MIXED), **change})
    for data in broken:
        with pytest.raises(AssertionError):
            check_report(data)


# --- Gradescope --------------------------------------------------------------------------------------------------


def test_gradescope_has_one_test_per_parameter_weighted() -> None:
    weights = {"W1": 3.0, "b1": 2.0, "W2": 3.0, "b2": 2.0}
    results = writers.gradescope_results(sample_report(MIXED), weights)
    check_gradescope(results, weights)
    assert [(t["name"], t["score"], t["max_score"], t["status"]) for t in results["tests"]] == [
        ("gradient of W1", 3.0, 3.0, "passed"),
        ("gradient of b1", 0.0, 2.0, "failed"),
        ("gradient of W2", 0.0, 3.0, "failed"),
        ("gradient of b2", 2.0, 2.0, "passed"),
    ]
    assert results["score"] == 5.0
    assert "b1: FAILED (shape)" in results["tests"][1]["output"]
    assert "batch=2" in results["tests"][1]["output"]  # the counterexample is what the student needs


def test_gradescope_without_weights_scores_one_per_parameter() -> None:
    results = writers.gradescope_results(sample_report())
    check_gradescope(results, {})
    assert results["score"] == 4.0 and all(t["status"] == "passed" for t in results["tests"])


def test_gradescope_for_a_submission_that_cannot_be_checked_scores_zero_and_says_why() -> None:
    results = writers.gradescope_results(sample_report(load_error="syntax error at line 5"), {"W1": 2})
    check_gradescope(results)
    assert results["score"] == 0.0 and "syntax error at line 5" in results["output"]


# --- JUnit -----------------------------------------------------------------------------------------------------


def test_junit_has_one_testcase_per_parameter_and_a_failure_for_each_failing_one() -> None:
    reports = [sample_report(MIXED), sample_report(), sample_report(load_error="cannot import")]
    root = check_junit(writers.junit_xml(reports), reports)
    failure = root.find("testsuite/testcase[@name='grad_b1']/failure")
    assert failure is not None and "b1: FAILED (shape)" in (failure.text or "")
    assert "--parameter b1" in (failure.text or "")  # how to reproduce it


def test_junit_stays_well_formed_when_messages_hold_control_characters() -> None:
    # A submission's exception text may carry ANSI colours, NUL bytes or lone surrogates: XML 1.0 holds none.
    data = sample_report({"W1": "error"}, message="ValueError: \x1b[31mred\x00 \ud800 end")
    root = check_junit(writers.junit_xml([data]), [data])
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and "\\x1b[31mred\\x00" in (failure.text or "") and "end" in (failure.text or "")


# --- terminal ----------------------------------------------------------------------------------------------------


def test_the_terminal_report_escapes_control_characters_from_the_submission() -> None:
    data = sample_report({"W1": "error"}, message="ValueError: \x1b]0;owned\x07 \r\x9b2J", output="\x1b[2Jhi\n")
    text = writers.terminal_report(data)
    assert "\\x1b]0;owned\\x07 \\x0d\\x9b2J" in text and "\\x1b[2Jhi" in text
    assert not any(c < " " and c not in "\n\t" for c in text)
    assert "W1  FAIL (error)" in text and "Reproduce: gradcheckers check homework.py --seed 0" in text


# --- Markdown and $GITHUB_STEP_SUMMARY -----------------------------------------------------------------------------


def test_markdown_has_a_row_per_parameter_and_details_for_failures() -> None:
    text = writers.markdown_summary(sample_report(MIXED))
    assert text.startswith("## ❌ gradcheckers: `homework.py`")
    assert "| `b1` | **fail** (shape) | 3 | batch=2, n_feature=1" in text
    assert "| `W1` | pass | 20 |" in text
    assert text.count("<details>") == 2 and "Score: **2 / 4**" in text
    assert writers.markdown_summary(sample_report()).startswith("## ✅")


@pytest.mark.parametrize("where", ["message", "output", "load_error"])
def test_markdown_stays_under_githubs_limit_with_huge_text(where: str) -> None:
    huge = "é" * 3_000_000 + "\ud800"  # 6 MB of UTF-8, and a character no encoder accepts
    data = sample_report(MIXED, **{where: huge})
    text = writers.markdown_summary(data)
    size = len(text.encode(errors="replace"))
    assert size <= writers.MARKDOWN_LIMIT <= GITHUB_SUMMARY_LIMIT
    if where != "output":  # the output is not part of the summary at all
        assert "truncated" in text


def test_write_text_appends_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "summary.md"
    writers.write_text(target, "first\n")
    writers.write_text(target, "second \ud800\n", append=True)
    assert target.read_text(encoding="utf-8") == "first\nsecond ?\n"


# --- through the command line ------------------------------------------------------------------------------------


def test_the_command_line_writes_every_report(tmp_path: Path) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("previous step\n", encoding="utf-8")
    paths = {kind: tmp_path / f"report.{kind}" for kind in ("json", "gradescope", "junit", "markdown")}
    options = [word for kind, path in paths.items() for word in (f"--{kind}", str(path))]
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    proc = subprocess.run(
        [sys.executable, "-m", "gradcheckers", "check", str(SUBMISSIONS / "gate_wrong_shape.py"), "--examples", "10",
         "--timeout", "2", "--weights", "W1=3,b1=2,W2=3,b2=2", *options],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(paths["json"].read_text())
    check_report(data)
    assert (data["score"], data["max_score"]) == (8.0, 10.0)
    weights = {"W1": 3.0, "b1": 2.0, "W2": 3.0, "b2": 2.0}
    gradescope = json.loads(paths["gradescope"].read_text())
    check_gradescope(gradescope, weights)
    assert gradescope["score"] == 8.0
    assert [t["status"] for t in gradescope["tests"]] == ["passed", "failed", "passed", "passed"]
    check_junit(paths["junit"].read_text(), [data])
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert "| `b1` | **fail** (shape) |" in markdown and "Score: **8 / 10**" in markdown
    assert summary.read_text(encoding="utf-8") == "previous step\n" + markdown


# --- JUnit against Jenkins' junit-10.xsd ------------------------------------------------------------------------


def test_junit_is_valid_against_the_jenkins_schema_with_times_and_a_plain_classname() -> None:
    data = sample_report(MIXED)
    data["submission"] = "students/alice/homework.py"
    for result in data["parameters"].values():
        result["seconds"] = 1.23456
    text = writers.junit_xml([data, sample_report(load_error="syntax error at line 5")])
    root = check_junit(text, [data, sample_report(load_error="syntax error at line 5")])
    suite = root.findall("testsuite")[0]
    assert suite.get("time") == "4.938" and suite.get("timestamp") == "2026-11-30T21:00:00+00:00"
    assert {c.get("classname") for c in suite.iter("testcase")} == {"students_alice_homework"}
    assert {c.get("time") for c in suite.iter("testcase")} == {"1.235"}


def test_the_schema_check_rejects_properties_inside_a_testcase() -> None:
    bad = ('<testsuites><testsuite name="s" tests="1" failures="0" errors="0"><testcase name="t">'
           '<properties><property name="a" value="b"/></properties></testcase></testsuite></testsuites>')
    with pytest.raises(Exception, match="properties"):
        check_junit_schema(bad)


def test_an_internal_error_is_an_error_testcase_and_not_a_pass() -> None:
    data = {**sample_report(), "internal_error": "checking W1: RuntimeError: boom (at assignment.py:3)"}
    data["passed"] = False
    root = check_junit(writers.junit_xml([data]), [data])
    assert root.find("testsuite/testcase[@name='internal']/error") is not None
    assert "internal error of gradcheckers" in writers.terminal_report(data)


# --- messages a student can act on --------------------------------------------------------------------------------


def test_the_worst_element_is_named_once_and_counts_that_include_shrinking_say_so() -> None:
    data = sample_report(MIXED)
    w2 = data["parameters"]["W2"]
    w2["message"] = "grad_W2 is wrong on 1 of 1 element(s).\nWorst element (0, 0): analytic 3, autograd 2"
    w2["worst"] = {"index": [0, 0], "analytic": 3.0, "autograd": 2.0, "finite_differences": 2.0,
                   "fd_error": 1e-9, "allowed": 1e-15}
    w2["examples"] = 137
    w2["snippet"] = "import torch\n\nX = torch.tensor([[-0.5]], dtype=torch.float64)"
    text = writers.terminal_report(data)
    assert text.lower().count("worst element") == 1
    assert "W2  FAIL (mismatch)        137 cases (searching and shrinking)" in text
    assert "  W1  PASS                   20 cases" in text
    assert "    X = torch.tensor([[-0.5]], dtype=torch.float64)" in text
    assert text.startswith("gradcheckers: homework.py (two-layer-sigmoid, --seed 0)")
