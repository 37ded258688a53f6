"""Report writers: terminal text, JSON, Markdown, JUnit XML and Gradescope ``results.json``.

Every writer reads the JSON form of a report (``SubmissionReport.to_json()``; the plugin rebuilds the same
form from test reports), so the command line, the plugin and a grader's own tooling share one schema.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

__all__ = [
    "MARKDOWN_LIMIT",
    "NOT_GRADED",
    "count_cases",
    "counterexample_snippet",
    "format_failure",
    "gradescope_results",
    "isolation_line",
    "junit_classname",
    "junit_xml",
    "markdown_summary",
    "reproduce_command",
    "terminal_report",
    "terminal_safe",
    "write_json",
    "write_text",
]

# GitHub refuses step summaries over 1 MiB; keep well under it, leaving room for other steps' summaries.
MARKDOWN_LIMIT = 512 * 1024
# A student's output is shown for context, not stored whole.
OUTPUT_EXCERPT = 2000

Report = Mapping[str, Any]

# Escape sequences in a submission's messages or output would otherwise reach the grader's terminal (ANSI
# sequences can rewrite lines, set the title, or worse on some terminals); newlines and tabs stay.
_TERMINAL_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Characters XML 1.0 cannot hold at all, not even escaped; a submission's messages may contain them (an ANSI
# colour code in an exception's text, a NUL byte).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def describe_case(case: Mapping[str, Any] | None) -> str:
    if not case:
        return ""
    # Every size and hyperparameter by name (the seed's four, or an assignment's own), then dtype, device, seed;
    # scale and data regime only where they are not the default, as Case.describe() writes them.
    parts = [f"{k}={v}" for k, v in case.items() if k not in ("scale", "regime")]
    if case.get("scale", 1.0) != 1.0:
        parts.append(f"scale={case['scale']:g}")
    if case.get("regime", "normal") != "normal":
        parts.append(f"data={case['regime']}")
    return ", ".join(parts)


def reproduce_command(report: Report, parameter: str | None = None) -> str:
    """One command that reproduces a report's verdicts (for one parameter, through the plugin's -k)."""
    settings = report.get("settings", {})
    words = ["gradcheckers", "check", str(report.get("submission", "SUBMISSION")), "--seed", str(report.get("seed", 0))]
    if report.get("assignment") and report["assignment"] != "two-layer-sigmoid":
        words += ["--assignment", str(report["assignment"])]
    if settings.get("examples") not in (None, 100):
        words += ["--examples", str(settings["examples"])]
    if settings.get("dtypes") and list(settings["dtypes"]) != ["float64", "float32"]:
        words += ["--dtypes", ",".join(settings["dtypes"])]
    if settings.get("devices") and list(settings["devices"]) != ["cpu"]:
        words += ["--devices", ",".join(settings["devices"])]
    if settings.get("stress"):
        words.append("--stress")
    if settings.get("rtol") is not None:
        words += ["--rtol", str(settings["rtol"]), "--atol", str(settings["atol"])]
    if parameter is not None:
        words += ["--parameter", parameter]
    return shlex.join(words)


# A snippet is for a case small enough to read: a few hundred numbers at most (shrinking makes most
# counterexamples one element per tensor).
SNIPPET_NUMBERS = 256


def counterexample_snippet(
    parameter: str, inputs: Mapping[str, Any], expected: Any, returned: Any, dtype: str, function: str | None = None
) -> str | None:
    """Python that rebuilds a failing case by hand: every input as ``torch.tensor([...], dtype=...)``, the
    expected gradient (autograd, float64) and what the formula returned. ``inputs`` maps names to nested lists
    (``Tensor.tolist()``; integer labels stay integers); None when the case holds too many numbers to read."""

    def count(value: Any) -> int:
        return sum(count(v) for v in value) if isinstance(value, list) else 1

    values = [*inputs.values(), expected, *([] if returned is None else [returned])]
    if sum(count(v) for v in values) > SNIPPET_NUMBERS:
        return None

    def tensor(value: Any, kind: str) -> str:
        # repr(float) is the shortest text that reads back to the same double, so the case is rebuilt exactly.
        text = repr(value).replace("nan", "float('nan')").replace("inf", "float('inf')")
        return f"torch.tensor({text}, dtype=torch.{kind})"

    def kind_of(value: Any) -> str:
        flat = value
        while isinstance(flat, list) and flat:
            flat = flat[0]
        return "int64" if isinstance(flat, int) and not isinstance(flat, bool) else dtype

    name = function or f"grad_{parameter}"
    lines = ["import torch", ""]
    lines += [f"{key} = {tensor(value, kind_of(value))}" for key, value in inputs.items()]
    lines.append(f"expected_{name} = {tensor(expected, 'float64')}  # autograd, in float64")
    if returned is not None:
        lines.append(f"returned_{name} = {tensor(returned, kind_of(returned))}  # what {name} returned")
    return "\n".join(lines)


def format_failure(parameter: str, result: Mapping[str, Any], reproduce: str | None = None) -> str:
    """The full explanation of one failed parameter: what, where (smallest case), why, how to reproduce."""
    lines = [f"{parameter}: FAILED ({result.get('reason')})", str(result.get("message") or "").rstrip()]
    case = describe_case(result.get("counterexample"))
    if case and case not in lines[1]:
        lines.append(f"Smallest failing case: {case}")
    worst = result.get("worst")
    if worst and "worst element" not in lines[1].lower():  # the mismatch message usually names it already
        lines.append(
            f"Worst element {tuple(worst['index'])}: analytic {worst['analytic']:.6g}, autograd "
            f"{worst['autograd']:.6g}, finite differences {worst['finite_differences']:.6g}"
        )
    if result.get("diagnosis"):
        lines.append(f"Likely cause: {result['diagnosis']}")
    if result.get("snippet"):
        lines += ["The smallest failing case, to paste into your own notebook:", _indent(str(result["snippet"]))]
    if reproduce:
        lines.append(f"Reproduce: {reproduce}")
    return "\n".join(line for line in lines if line)


# The reason a report carries while its submission is being checked: written before the check starts and
# replaced only by the final verdict, so a grader stopped in between leaves a zero, never a stale score.
NOT_GRADED = "not-graded"


def terminal_safe(text: str) -> str:
    """``text`` with every control character but newline and tab shown as ``\\xNN`` (safe on a terminal)."""
    return _TERMINAL_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _indent(text: str) -> str:
    return "\n".join("    " + line if line else line for line in text.splitlines())


def terminal_report(report: Report) -> str:
    """A readable plain-text report of one submission, safe to print: control characters are escaped."""
    return terminal_safe(_terminal_report(report))


def isolation_line(record: Mapping[str, str] | None) -> str:
    """One line on the confinement a submission ran under: the layers in force, and those missing, with why."""
    if not record:
        return "isolation: no worker was started"
    layers = ("user", "no_new_privs", "filesystem", "network", "signals", "processes")
    missing = [f"{k} ({record.get(k, 'not reported')})" for k in layers
               if str(record.get(k, "unavailable")).startswith(("unavailable", "unchanged"))]
    held = [k for k in layers if k in record and not any(m.startswith(k + " ") for m in missing)]
    line = f"isolation: {', '.join(held) or 'no layer'} in force"
    if record.get("torch") == "absent":
        line += " (numpy mode: no torch)"
    return line + (f"; missing: {'; '.join(missing)}" if missing else "")


def _terminal_report(report: Report) -> str:
    # The run's seed as the flag that reproduces it: "seed" is also a bundled example and a case's data seed.
    lines = [f"gradcheckers: {report.get('submission')} ({report.get('assignment')}, --seed {report.get('seed')})"]
    if report.get("isolation"):
        lines.append(isolation_line(report["isolation"]))
    if report.get("cell_notes"):
        lines += ["notebook cells the grader stopped:", *(f"  {note}" for note in report["cell_notes"])]
    if report.get("load_error"):
        lines.append(f"cannot check the submission: {report['load_error']}")
        return "\n".join(lines)
    params: Mapping[str, Mapping[str, Any]] = report.get("parameters", {})
    forward: Mapping[str, Any] | None = report.get("forward")
    verdicts = {**({"forward": forward} if forward else {}), **params}
    width = max((len(p) for p in verdicts), default=2)
    for name, result in verdicts.items():
        verdict = "PASS" if result["passed"] else f"FAIL ({result.get('reason')})"
        extra = f", {result['inconclusive']} inconclusive" if result.get("inconclusive") else ""
        lines.append(f"  {name:<{width}}  {verdict:<22} {count_cases(result)}{extra}")
    if forward and not forward["passed"]:
        lines += ["", format_failure("forward", forward, reproduce_command(report)), WRONG_FORWARD]
    for name, result in params.items():
        if not result["passed"]:
            lines += ["", format_failure(name, result, reproduce_command(report, name))]
    if report.get("internal_error"):
        lines += ["", f"internal error of gradcheckers (not a verdict on the submission): {report['internal_error']}"]
    score = report.get("score")
    if score is not None:
        lines += ["", f"score {score:g} / {report.get('max_score', len(params)):g}: "
                      + _outcome(report, params)]
    output = str(report.get("output") or "")
    if output.strip():
        lines += ["", "Output of the submission (excerpt):", _excerpt(output)]
    return "\n".join(lines)


def _outcome(report: Report, params: Mapping[str, Mapping[str, Any]]) -> str:
    if report.get("passed"):
        return "all gradients agree"
    if params and all(r["passed"] for r in params.values()) and not (report.get("forward") or {}).get("passed", True):
        return "every gradient agrees, but the forward is wrong"
    return "some gradients are wrong"


WRONG_FORWARD = ("The forward is wrong, so the gradients below are judged against the reference forward, not against "
                 "this one: they may pass or fail for reasons the forward hides. Fix the forward first.")


def count_cases(result: Mapping[str, Any]) -> str:
    """How many cases a parameter's check tried. A failure's count includes the cases tried while shrinking,
    so it may exceed the number of examples asked for: say so, rather than leave it unexplained."""
    count = int(result.get("examples", 0))
    noun = "case" if count == 1 else "cases"
    if result.get("passed") or result.get("reason") == "missing":
        return f"{count} {noun}"
    return f"{count} {noun} (searching and shrinking)"


def _excerpt(text: str, limit: int = OUTPUT_EXCERPT) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters)"


def markdown_summary(report: Report) -> str:
    """A Markdown summary (for ``$GITHUB_STEP_SUMMARY`` or a pull-request comment), under MARKDOWN_LIMIT."""
    mark = "✅" if report.get("passed") else "❌"
    lines = [f"## {mark} gradcheckers: {_md_inline(str(report.get('submission')))}", ""]
    if report.get("cell_notes"):
        lines += ["Notebook cells the grader stopped:", "", *(f"- {_md_inline(n)}" for n in report["cell_notes"]), ""]
    if report.get("load_error"):
        lines += ["**Cannot check the submission:**", "", *_md_block(str(report["load_error"]))]
        return _cap("\n".join(lines))
    lines += ["| parameter | verdict | examples | smallest failing case |", "| --- | --- | --- | --- |"]
    params: Mapping[str, Mapping[str, Any]] = report.get("parameters", {})
    for name, result in params.items():
        verdict = "pass" if result["passed"] else f"**fail** ({result.get('reason')})"
        case = describe_case(result.get("counterexample"))
        lines.append(f"| `{name}` | {verdict} | {result.get('examples', 0)} | {case} |")
    if report.get("internal_error"):
        lines += ["", f"**Internal error of gradcheckers** (not a verdict): `{report['internal_error']}`"]
    forward = report.get("forward")
    if forward and not forward["passed"]:
        lines += ["", f"**The forward is wrong** ({_md_inline(str(forward.get('reason')))}): {WRONG_FORWARD}"]
    lines += ["", f"Score: **{report.get('score', 0):g} / {report.get('max_score', len(params)):g}**, "
                  f"seed {report.get('seed')}"]
    for name, result in params.items():
        if not result["passed"]:
            summary = f"<code>{html.escape(name)}</code>: {html.escape(str(result.get('reason')))}"
            lines += ["", f"<details><summary>{summary}</summary>", "",
                      *_md_block(format_failure(name, result, reproduce_command(report, name))), "</details>"]
    return _cap("\n".join(lines) + "\n")


def _md_block(text: str) -> list[str]:
    """A fenced code block that ``text`` cannot close: CommonMark closes a fence only with a run of backticks
    at least as long as the opening one, so the fence is one longer than the longest run in the text."""
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, terminal_safe(text), fence]


def _md_inline(text: str) -> str:
    """``text`` as one inline code span on one line: no newline can start a heading, no backtick end the span."""
    flat = " ".join(terminal_safe(text).split())
    longest = max((len(run) for run in re.findall("`+", flat)), default=0)
    ticks = "`" * (longest + 1)
    return f"{ticks} {flat} {ticks}" if longest else f"`{flat}`"


def _cap(text: str, limit: int = MARKDOWN_LIMIT) -> str:
    data = text.encode(errors="replace")
    if len(data) <= limit:
        return text
    return data[: limit - 200].decode(errors="ignore") + "\n\n*(summary truncated to stay under GitHub's limit)*\n"


def gradescope_results(report: Report, weights: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Gradescope's ``results.json``: one test per parameter with score, max_score, status and output."""
    weights = weights or {}
    params: Mapping[str, Mapping[str, Any]] = report.get("parameters", {})
    if report.get("load_error"):
        return {
            "score": 0.0,
            "output": terminal_safe(f"Your submission could not be checked: {report['load_error']}"),
            "output_format": "text",
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": [],
        }
    tests: list[dict[str, Any]] = []
    forward = report.get("forward")
    if forward:  # a layer's forward: shown to the student, worth nothing (the score counts the gradients)
        output = "All checks passed." if forward["passed"] else terminal_safe(
            f"{format_failure('forward', forward)}\n{WRONG_FORWARD}")
        tests.append({"name": "the forward (not scored)", "number": "0", "score": 0.0, "max_score": 0.0,
                      "status": "passed" if forward["passed"] else "failed", "output": output,
                      "output_format": "text", "visibility": "visible"})
    for number, (name, result) in enumerate(params.items(), start=1):
        weight = float(weights.get(name, 1.0))
        # Plain text, never HTML or Markdown (Gradescope renders those): the message quotes the submission.
        output = "All checks passed." if result["passed"] else terminal_safe(format_failure(name, result))
        tests.append({
            "name": f"gradient of {name}",
            "number": str(number),
            "score": weight if result["passed"] else 0.0,
            "max_score": weight,
            "status": "passed" if result["passed"] else "failed",
            "output": output,
            "output_format": "text",
            "visibility": "visible",
        })
    notes = report.get("cell_notes") or []
    overall = {"output": terminal_safe("\n".join(["Notebook cells the grader stopped:", *notes]))} if notes else {}
    return {
        "score": float(sum(t["score"] for t in tests)),
        **overall,
        "output_format": "text",
        "test_output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def junit_classname(submission: str) -> str:
    """A JUnit classname for a submission: CI servers split classnames at dots into packages, so a path such
    as ``students/alice/hw.py`` becomes ``students_alice_hw``, not a package ``students/alice/hw`` and a class
    ``py``."""
    stem = re.sub(r"\.(py|ipynb)$", "", submission)
    return re.sub(r"[^0-9A-Za-z_]+", "_", stem).strip("_") or "submission"


def _junit_time(seconds: float) -> str:
    # Jenkins' junit-10.xsd (SUREFIRE_TIME) allows at most three decimals.
    return f"{max(seconds, 0.0):.3f}"


def junit_xml(reports: Sequence[Report]) -> str:
    """JUnit XML: one testsuite per submission, one testcase per parameter (after a layer's ``forward``). Valid
    against Jenkins' junit-10.xsd (the test suite checks it): the seed is a property of the suite, never of a
    testcase."""
    suites = ET.Element("testsuites", name="gradcheckers")
    for report in reports:
        params: Mapping[str, Mapping[str, Any]] = report.get("parameters", {})
        forward = report.get("forward")
        verdicts = [("forward", "forward", forward)] if forward else []
        verdicts += [(name, f"grad_{name}", result) for name, result in params.items()]
        failures = sum(1 for _, _, r in verdicts if not r["passed"])
        problems = [(kind, str(report[key])) for kind, key in (("load", "load_error"), ("internal", "internal_error"))
                    if report.get(key)]
        seconds = {label: float(r.get("seconds") or 0.0) for _, label, r in verdicts}
        suite = ET.SubElement(suites, "testsuite", name=str(report.get("submission")),
                              tests=str(len(verdicts) + len(problems)), failures=str(failures),
                              errors=str(len(problems)), time=_junit_time(sum(seconds.values())))
        if report.get("started"):
            suite.set("timestamp", str(report["started"]))
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="seed", value=str(report.get("seed")))
        classname = junit_classname(str(report.get("submission")))
        for kind, text in problems:
            case = ET.SubElement(suite, "testcase", classname=classname, name=kind, time="0.000")
            ET.SubElement(case, "error", message=text[:500], type=f"{kind}-error").text = text
        for name, label, result in verdicts:
            case = ET.SubElement(suite, "testcase", classname=classname, name=label, time=_junit_time(seconds[label]))
            if not result["passed"]:
                reason = str(result.get("reason"))
                failure = ET.SubElement(case, "failure", message=reason, type=reason)
                # The forward is checked with every parameter, never alone (--parameter narrows it away).
                failure.text = format_failure(name, result, reproduce_command(
                    report, None if label == "forward" else name))
    for element in suites.iter():
        element.text = None if element.text is None else _xml_text(element.text)
        for key, value in element.attrib.items():
            element.attrib[key] = _xml_text(value)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def _xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x20 else "\ufffd", text)


def write_text(path: str | os.PathLike[str], text: str, *, append: bool = False) -> None:
    """Write ``text`` to ``path``: atomically (a temporary file in the same folder, then a rename), so a reader
    sees the old report or the new one, never half of one; with ``append``, added at the end in place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if append:
        with target.open("a", encoding="utf-8", errors="replace") as handle:
            handle.write(text)
        return
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
