"""End-to-end tests of ``gradcheckers check``: the real command line, in a real process, with real workers.

Every bad input the course gate must survive is a file in tests/submissions/: ``gate_*`` files are complete
four-function submissions that are correct except for the one bad behaviour their docstring names, so each run
also shows that one bad function costs only its own parameter. Each run must end with the documented exit code
and reason, write reports that validate (``test_report.py`` holds the validators), and never show a traceback
of gradcheckers' own code. The notebook fixture is built by ``GATE_NOTEBOOK`` below; after changing it, rewrite
it with ``python tests/test_cli.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from test_report import check_gradescope, check_junit, check_report

SUBMISSIONS = Path(__file__).parent / "submissions"
PARAMETERS = ("W1", "b1", "W2", "b2")
# Small enough to keep each run to a few seconds; a timeout above the slowest correct call on a loaded machine.
# A generous call timeout: these submissions never hang, and a loaded CI machine must not turn a slow first
# call into a "timeout" verdict (the hang tests set their own, short, timeout).
FAST = ("--timeout", "15", "--examples", "10")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    report: dict[str, Any]


def gradcheckers(*args: str, tmp_path: Path) -> Run:
    """``python -m gradcheckers ARGS`` in a child process; for ``check``, every report is written and validated."""
    # Not into the summary of the CI job running these tests (test_report.py tests that variable).
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    command = [sys.executable, "-m", "gradcheckers", *args]
    paths = {kind: tmp_path / f"report.{kind}" for kind in ("json", "gradescope", "junit", "markdown")}
    if args[0] == "check":
        command += [word for kind, path in paths.items() for word in (f"--{kind}", str(path))]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    seconds = time.perf_counter() - started
    assert "Traceback" not in proc.stderr, proc.stderr  # a crash of ours, never of the submission's
    assert not any(c < " " and c not in "\n\t" for c in proc.stdout), "raw control characters on the terminal"
    report: dict[str, Any] = {}
    if args[0] == "check" and proc.returncode in (0, 1, 2, 3) and paths["json"].exists():
        report = json.loads(paths["json"].read_text())
        check_report(report)
        check_gradescope(json.loads(paths["gradescope"].read_text()), {})
        check_junit(paths["junit"].read_text(), [report])
        assert paths["markdown"].read_text(encoding="utf-8").startswith("## ")
    return Run(proc.returncode, proc.stdout, proc.stderr, seconds, report)


def reasons(report: dict[str, Any]) -> dict[str, str | None]:
    return {name: result["reason"] for name, result in report["parameters"].items()}


def only(**failing: str) -> dict[str, str | None]:
    """The reasons of a gate submission: these parameters fail for these reasons, the others pass."""
    return {name: failing.get(name) for name in PARAMETERS}


# --- bad inputs that fail some checks: exit 1 -------------------------------------------------------------------

FAILS = [
    pytest.param("plugin_missing_b2.py", only(b2="missing"), ["no function grad_b2"], id="missing-function"),
    pytest.param("gate_exception.py", only(W1="error"), ["raised ValueError: not derived yet"], id="exception"),
    pytest.param("gate_wrong_shape.py", only(b1="shape"), ["returned shape (1, 1); b1 has shape (1,)"], id="shape"),
    pytest.param("gate_nan.py", only(b2="non-finite"), ["non-finite value"], id="nan"),
    pytest.param("gate_memory_bomb.py", only(W2="memory"), ["ran out of memory"], id="memory-bomb"),
    pytest.param("gate_inplace.py", only(W2="mutated-input"), ["changed its input argument 1 (X)"], id="in-place"),
    # The autograd APIs: Tensor.backward, torch.autograd.grad, torch.func.grad, torch.autograd.functional ...
    pytest.param("gate_autograd.py", only(W1="forbidden", b1="forbidden", W2="forbidden", b2="forbidden"),
                 ["Tensor.backward was used", "torch.autograd.grad was used", "torch.func.grad was used",
                  "torch.autograd.functional.jacobian was used"], id="autograd"),
    # ... functorch-style vjp and forward-mode AD.
    pytest.param("gate_autograd_more.py", only(W1="forbidden", b1="forbidden"),
                 ["functorch.vjp was used", "torch.autograd.forward_ad.dual_level was used"],
                 id="autograd-vjp-forward-ad"),
    # sys.exit (grad_W1) and os._exit (grad_b1) inside a call: a failure of that call, never a pass.
    pytest.param("gate_exit_in_call.py", only(W1="error", b1="error"),
                 ["tried to end the program (SystemExit('done'))", "exited with status 5 (os._exit"],
                 id="exit-in-call"),
    # torch.allclose, torch.testing.assert_close, numpy.allclose and Tensor.__eq__ patched in the worker: the
    # verdict is reached in the parent, so the zeros grad_W1 returns still fail.
    pytest.param("gate_monkeypatch.py", only(W1="mismatch"), ["grad_W1 disagrees with autograd"],
                 id="monkeypatch-allclose"),
]


@pytest.mark.parametrize(("submission", "expected", "explanations"), FAILS)
def test_a_bad_function_fails_its_own_parameter_only(
    submission: str, expected: dict[str, str | None], explanations: list[str], tmp_path: Path
) -> None:
    run = gradcheckers("check", str(SUBMISSIONS / submission), *FAST, tmp_path=tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert reasons(run.report) == expected
    messages = "\n".join(r["message"] or "" for r in run.report["parameters"].values())
    for explanation in explanations:
        assert explanation in messages
        assert explanation in run.stdout
    assert not run.report["passed"] and run.report["load_error"] is None
    failing = [name for name, reason in expected.items() if reason]
    assert f"score {4 - len(failing)} / 4" in run.stdout
    for name in failing:
        assert f"{name}  FAIL ({expected[name]})" in run.stdout


def test_a_hang_costs_one_timeout_per_parameter(tmp_path: Path) -> None:
    # grad_W1 spins and grad_b1 sleeps forever. Shrinking must not spend a timeout per step: 20 examples would
    # cost 20 timeouts or more per parameter.
    timeout, hanging = 2.0, 2
    run = gradcheckers("check", str(SUBMISSIONS / "gate_hang.py"), "--timeout", f"{timeout:g}", "--examples", "20",
                       tmp_path=tmp_path)
    assert run.returncode == 1
    assert reasons(run.report) == only(W1="timeout", b1="timeout")  # the functions after a hang still run
    assert "did not return within 2 s" in run.report["parameters"]["W1"]["message"]
    # The time spent in the submission's calls is bounded by the timeouts; the whole run adds the start-up of
    # two Python processes importing torch, slow on a loaded machine but far from 20 timeouts per parameter.
    assert run.report["timings"]["submission_code"] < 4 * timeout * hanging, run.report["timings"]
    assert run.seconds < 4 * timeout * hanging + 15, f"{run.seconds:.1f} s"


def test_check_leaves_no_fork_server_folder_behind(tmp_path: Path) -> None:
    """The command line leaves by os._exit (no interpreter teardown): the fork server's folder is still removed,
    and the server exits by itself when its socket closes."""
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.run([sys.executable, "-m", "gradcheckers", "check", str(SUBMISSIONS / "correct.py"), *FAST,
                           "--quiet"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**env, "TMPDIR": str(scratch)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("PASS (4/4)")
    assert list(scratch.iterdir()) == []


def test_an_output_flood_is_truncated_and_the_verdict_stands(tmp_path: Path) -> None:
    # About 1 MB printed while loading and 1 MB in every call of grad_W1; the functions are right.
    run = gradcheckers("check", str(SUBMISSIONS / "gate_print_flood.py"), *FAST, tmp_path=tmp_path)
    assert run.returncode == 0, run.stdout
    assert reasons(run.report) == only()
    output = run.report["output"]
    assert output.startswith("debugging output")
    assert "more bytes of output were dropped" in output and len(output) < 70_000
    assert len(run.stdout) < 10_000 and "more characters)" in run.stdout  # the terminal gets an excerpt
    assert (tmp_path / "report.json").stat().st_size < 200_000


def test_allow_autograd_lets_an_autograd_submission_pass(tmp_path: Path) -> None:
    # The first torch.func transform in a worker imports torch._dynamo (seconds): hence the longer timeout.
    run = gradcheckers("check", str(SUBMISSIONS / "gate_autograd.py"), "--allow-autograd", "--timeout", "20",
                       "--examples", "10", tmp_path=tmp_path)
    assert run.returncode == 0, run.stdout
    assert reasons(run.report) == only() and run.report["passed"]


# --- the notebook: magics, a training loop and the functions: exit 0 ---------------------------------------------

GATE_NOTEBOOK = new_notebook(
    cells=[
        new_markdown_cell("# Homework: the gradients of a two-layer network"),
        new_code_cell("!pip install torch\n%load_ext autoreload\n%autoreload 2\nimport torch"),
        new_code_cell(
            "torch.manual_seed(0)\n"
            "X, Y = torch.randn(64, 3, dtype=torch.float64), torch.randn(64, 2, dtype=torch.float64)\n"
            "W1, b1 = torch.randn(3, 8, dtype=torch.float64), torch.zeros(8, dtype=torch.float64)\n"
            "W2, b2 = torch.randn(8, 2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)\n"
            "LR = 1e-3"
        ),
        new_code_cell(
            "def _parts(X, Y, W1, b1, W2, b2):\n"
            "    Hs = torch.sigmoid(X @ W1 + b1)\n"
            "    G = -2 * (Y - (Hs @ W2 + b2))\n"
            "    return Hs, G, (G @ W2.T) * Hs * (1 - Hs)\n"
            "\n"
            "def grad_W1(X, Y, W1, b1, W2, b2):\n"
            "    return X.T @ _parts(X, Y, W1, b1, W2, b2)[2]\n"
            "\n"
            "def grad_b1(X, Y, W1, b1, W2, b2):\n"
            "    return _parts(X, Y, W1, b1, W2, b2)[2].sum(0)\n"
            "\n"
            "def grad_W2(X, Y, W1, b1, W2, b2):\n"
            "    Hs, G, _ = _parts(X, Y, W1, b1, W2, b2)\n"
            "    return Hs.T @ G\n"
            "\n"
            "def grad_b2(X, Y, W1, b1, W2, b2):\n"
            "    return _parts(X, Y, W1, b1, W2, b2)[1].sum(0)"
        ),
        # Trains for ever (and uses autograd, and prints): it must not run while the notebook is checked.
        new_code_cell(
            "%%time\n"
            "while True:\n"
            "    W1, b1 = W1 - LR * grad_W1(X, Y, W1, b1, W2, b2), b1 - LR * grad_b1(X, Y, W1, b1, W2, b2)\n"
            "    W2, b2 = W2 - LR * grad_W2(X, Y, W1, b1, W2, b2), b2 - LR * grad_b2(X, Y, W1, b1, W2, b2)\n"
            "    W1.requires_grad_().sum().backward()\n"
            "    print(((Y - torch.sigmoid(X @ W1 + b1) @ W2 - b2) ** 2).sum())"
        ),
        new_code_cell("!ls\nprint(grad_W1(X, Y, W1, b1, W2, b2).shape)\ngrad_b1?"),
    ]
)


def write_gate_notebook() -> None:
    nbformat.write(GATE_NOTEBOOK, str(SUBMISSIONS / "gate_notebook.ipynb"))


def test_the_gate_notebook_is_up_to_date() -> None:
    stored = nbformat.read(str(SUBMISSIONS / "gate_notebook.ipynb"), as_version=4)
    assert [(c.cell_type, c.source) for c in stored.cells] == [(c.cell_type, c.source) for c in GATE_NOTEBOOK.cells], (
        "gate_notebook.ipynb is stale: run `python tests/test_cli.py`"
    )


def test_a_notebook_with_magics_and_a_training_loop_passes(tmp_path: Path) -> None:
    # Were the training loop run, loading would time out (exit 2) instead.
    run = gradcheckers("check", str(SUBMISSIONS / "gate_notebook.ipynb"), *FAST, "--load-timeout", "10",
                       "--definitions-only", tmp_path=tmp_path)
    assert run.returncode == 0, run.stdout
    assert reasons(run.report) == only() and run.report["output"] == ""


# --- submissions that cannot be checked at all: exit 2 --------------------------------------------------------------

UNCHECKABLE = [
    pytest.param("no_such_submission.py", "not-found", "no such file", id="missing-file"),
    pytest.param("syntax_error.py", "syntax", "syntax error at line 5", id="syntax-error"),
    pytest.param("import_gradcheckers.py", "forbidden", "`import gradcheckers` at line 3", id="import-gradcheckers"),
    pytest.param("import_models.py", "forbidden", "`import models` at line 3", id="import-models"),
    pytest.param("exit_at_import.py", "exit", "tried to end the program (SystemExit(3))", id="sys-exit-at-import"),
    pytest.param("os_exit_at_import.py", "exit", "exited with status 4", id="os-exit-at-import"),
]


@pytest.mark.parametrize(("submission", "load_reason", "message"), UNCHECKABLE)
def test_a_submission_that_cannot_be_checked_exits_2(
    submission: str, load_reason: str, message: str, tmp_path: Path
) -> None:
    run = gradcheckers("check", str(SUBMISSIONS / submission), *FAST, tmp_path=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.report["load_reason"] == load_reason
    assert message in run.report["load_error"]
    assert run.report["parameters"] == {} and not run.report["passed"] and run.report["score"] == 0
    assert "cannot check the submission: " in run.stdout


# --- options -------------------------------------------------------------------------------------------------------

BAD_OPTIONS = [
    (["--examples", "0"], "argument --examples: expected a positive integer, got '0'"),
    (["--seed", "-1"], "argument --seed: expected an integer in [0, 2**32), 'last' or 'random', got '-1'"),
    (["--dtypes", "float8"], "argument --dtypes: expected a comma-separated list of float64, float32, float16, "
                             "bfloat16, got 'float8'"),
    (["--timeout", "0"], "argument --timeout: expected a positive number, got '0'"),
    (["--rtol", "1e-3"], "--rtol and --atol go together: give both or neither"),
    (["--weights", "W1=x"], "argument --weights: expected NAME=WEIGHT pairs such as W1=2,b1=1, got 'W1=x'"),
    (["--weights", "Z9=1"], "--weights 'Z9' is not one of W1, b1, W2, b2"),
    (["--parameter", "Z9"], "--parameter 'Z9' is not one of W1, b1, W2, b2"),
]


@pytest.mark.parametrize(("options", "error"), BAD_OPTIONS, ids=[" ".join(o) for o, _ in BAD_OPTIONS])
def test_a_bad_option_value_is_a_one_line_usage_error(options: list[str], error: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gradcheckers", "check", str(SUBMISSIONS / "correct.py"), *options],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    *usage, last = proc.stderr.rstrip("\n").splitlines()
    assert last == f"gradcheckers check: error: {error}"
    assert usage[0].startswith("usage: gradcheckers check ")  # the command's usage, not the top level's
    assert all(line.startswith(" ") for line in usage[1:]), proc.stderr


# --- determinism ---------------------------------------------------------------------------------------------------


def test_the_same_submission_and_seed_give_the_same_report(tmp_path: Path) -> None:
    # The homework's own formulas (bundled as `seed`): wrong shapes and values, so counterexamples are shrunk.
    reports = []
    for attempt in ("first", "second"):
        (tmp_path / attempt).mkdir()
        run = gradcheckers("check", "seed", "--seed", "7", *FAST, tmp_path=tmp_path / attempt)
        assert run.returncode == 1
        # Everything but the times: the timings, when it started, and each parameter's seconds.
        data = {k: v for k, v in run.report.items() if k not in ("timings", "output", "started")}
        data["parameters"] = {p: {k: v for k, v in r.items() if k != "seconds"} for p, r in data["parameters"].items()}
        reports.append(data)
    assert reports[0] == reports[1]
    assert any(r["counterexample"] for r in reports[0]["parameters"].values())


if __name__ == "__main__":
    write_gate_notebook()


# --- first contact: --version, --help, usage errors and internal errors -------------------------------------------


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    import gradcheckers as package

    run = gradcheckers("--version", tmp_path=tmp_path)
    assert (run.returncode, run.stdout.strip()) == (0, f"gradcheckers {package.__version__}")


def test_help_shows_the_defaults(tmp_path: Path) -> None:
    run = gradcheckers("check", "--help", tmp_path=tmp_path)
    assert run.returncode == 0
    # argparse wraps lines at the terminal's width, also after a hyphen ("two-\n layer-sigmoid").
    text = " ".join(run.stdout.split()).replace("- ", "-")
    for default in ("(default: 100)", "(default: float64,float32)", "(default: two-layer-sigmoid)",
                    "(default: 10.0)", "(default: 2048)", "(default: 0)"):
        assert default in text, default
    assert "(default: None)" not in text and "(default: False)" not in text


def test_an_unknown_assignment_is_a_usage_error_not_a_failed_check(tmp_path: Path) -> None:
    run = gradcheckers("check", "correct", "--assignment", "nosuch", *FAST, tmp_path=tmp_path)
    assert run.returncode == 2, run.stderr
    assert "assignment='nosuch' is neither a bundled assignment" in run.stderr
    assert "usage: gradcheckers check" in run.stderr


BROKEN_ASSIGNMENT = '''
from gradcheckers.assignment import get_assignment
import dataclasses

_seed = get_assignment("two-layer-sigmoid")


def _draw(sizes, generator, scale=1.0):
    raise RuntimeError("the instructor's draw is broken")


ASSIGNMENT = dataclasses.replace(_seed, name="broken", draw=_draw)
'''


def test_an_internal_error_exits_3_and_still_writes_every_report(tmp_path: Path) -> None:
    # A definition whose draw raises: an error of the checking machinery, never a verdict on the student.
    (tmp_path / "broken.py").write_text(BROKEN_ASSIGNMENT)
    run = gradcheckers("check", str(SUBMISSIONS / "correct.py"), "--assignment", "broken.py", *FAST,
                       tmp_path=tmp_path)
    assert run.returncode == 3, (run.stdout, run.stderr)
    assert run.stderr.startswith("gradcheckers: internal error (exit 3): checking W1: RuntimeError: the instructor")
    assert run.report["internal_error"].startswith("checking W1: RuntimeError") and not run.report["passed"]
    assert "internal error of gradcheckers" in run.stdout


def test_a_gate_run_writes_nothing_into_the_current_folder(tmp_path: Path) -> None:
    # On Gradescope the current folder is the submission's: Hypothesis's .hypothesis/ (its constants cache) must
    # not appear there.
    run = gradcheckers("check", "correct", *FAST, tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"report.{k}" for k in
                                                                ("json", "gradescope", "junit", "markdown"))


def test_hypothesis_constants_are_cached_in_the_user_cache_and_nothing_else_is_left(tmp_path: Path) -> None:
    # Hypothesis parses every module outside site-packages (gradcheckers itself, in an editable install) for
    # its constants; the cache of what it found is kept in the user's cache folder, and the private storage
    # folder of each run is removed.
    cache, scratch, work = tmp_path / "cache", tmp_path / "tmp", tmp_path / "work"
    scratch.mkdir()
    work.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "TMPDIR": str(scratch)}
    env.pop("HYPOTHESIS_STORAGE_DIRECTORY", None)
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "gradcheckers", "check", "correct", *FAST, "--quiet"],
                              capture_output=True, text=True, timeout=120, env=env, cwd=work)
        assert proc.returncode == 0, proc.stderr
        assert not [p.name for p in scratch.iterdir() if p.name.startswith("gradcheckers-hypothesis-")]
    assert list(work.iterdir()) == []
    constants = cache / "gradcheckers" / "hypothesis-constants"
    import importlib.util

    import gradcheckers as package

    assert constants.is_dir()
    # Hypothesis mines local modules' constants since 6.131 (hypothesis.internal.constants_ast); gradcheckers's
    # own modules are local in an editable install.
    if "/site-packages/" not in str(package.__file__) and importlib.util.find_spec(
            "hypothesis.internal.constants_ast") is not None:
        assert any(constants.iterdir())


# --- notebooks as students write them: every cell runs, each within its budget --------------------------------------

STUDENT_NOTEBOOK_CELLS = [
    "import time\nimport torch\nact = torch.nn.Sigmoid()  # a module object: not a 'plain constant'",
    "%%time\ndef forward(X, W1, b1, W2, b2):\n    H = act(X @ W1 + b1)\n    return H, H @ W2 + b2",
    "with torch.no_grad():\n"
    "    def grad_W1(X, Y, W1, b1, W2, b2):\n"
    "        H, P = forward(X, W1, b1, W2, b2)\n"
    "        return X.T @ ((-2 * (Y - P) @ W2.T) * H * (1 - H))\n"
    "    def grad_b1(X, Y, W1, b1, W2, b2):\n"
    "        H, P = forward(X, W1, b1, W2, b2)\n"
    "        return ((-2 * (Y - P) @ W2.T) * H * (1 - H)).sum(0)",
    "%matplotlib inline\n"
    "%config InlineBackend.figure_format = \\\n"
    "    'retina'\n"
    "%timeit -n1 -r1 SCALE = (4\n"
    "                         % 3)\n"
    "def grad_W2(X, Y, W1, b1, W2, b2):\n"
    "    H, P = forward(X, W1, b1, W2, b2)\n"
    "    return H.T @ (-2 * (Y - P))",
    # A training cell: the grader refuses the backward pass, which stops this cell and no other.
    "net = torch.nn.Linear(3, 1)\n"
    "opt = torch.optim.SGD(net.parameters(), lr=0.1)\n"
    "for epoch in range(100):\n"
    "    opt.zero_grad()\n"
    "    loss = net(torch.ones(2, 3)).pow(2).sum()\n"
    "    loss.backward()\n"
    "    opt.step()",
    "while True:  # a training loop left running\n    time.sleep(0.1)",
    "print('accuracy', 1 / 0)",
    "def grad_b2(X, Y, W1, b1, W2, b2):\n    return SCALE * (-2 * (Y - forward(X, W1, b1, W2, b2)[1])).sum(0)",
]
# Cell numbers count the markdown cell in front, as a student counts them when scrolling.
STUDENT_NOTEBOOK_NOTES = [
    "cell 6 called Tensor.backward at line 6: `loss.backward()`, which the grader does not allow; the cells after "
    "it still ran",
    "cell 7 ran longer than 5 s and was cut off; the cells after it still ran",
    "cell 8 raised ZeroDivisionError: division by zero at line 1: `print('accuracy', 1 / 0)`; the cells after it "
    "still ran",
]


def student_notebook(path: Path) -> Path:
    cells = [new_markdown_cell("# Homework 2"), *(new_code_cell(c) for c in STUDENT_NOTEBOOK_CELLS)]
    nbformat.write(new_notebook(cells=cells), str(path))
    return path


def test_a_students_notebook_runs_every_cell_by_default(tmp_path: Path) -> None:
    run = gradcheckers("check", str(student_notebook(tmp_path / "student.ipynb")), *FAST, tmp_path=tmp_path)
    assert (run.returncode, reasons(run.report)) == (0, only()), run.stdout
    assert run.report["cell_notes"] == STUDENT_NOTEBOOK_NOTES
    assert "\n".join(f"  {note}" for note in STUDENT_NOTEBOOK_NOTES) in run.stdout  # the terminal report too
    gradescope = json.loads((tmp_path / "report.gradescope").read_text())
    assert gradescope["output"] == "\n".join(["Notebook cells the grader stopped:", *STUDENT_NOTEBOOK_NOTES])
    assert "- `cell 7 ran longer than 5 s and was cut off; the cells after it still ran`" in (
        tmp_path / "report.markdown").read_text()


def test_run_all_cells_is_still_accepted_and_changes_nothing(tmp_path: Path) -> None:
    run = gradcheckers("check", str(student_notebook(tmp_path / "student.ipynb")), *FAST, "--run-all-cells",
                       "--parameter", "b2", tmp_path=tmp_path)
    assert (run.returncode, run.report["cell_notes"]) == (0, STUDENT_NOTEBOOK_NOTES), run.stdout


def test_definitions_only_runs_the_old_way(tmp_path: Path) -> None:
    # `act = torch.nn.Sigmoid()` calls something, so it is not a definition: every gradient then misses it.
    run = gradcheckers("check", str(student_notebook(tmp_path / "student.ipynb")), *FAST, "--definitions-only",
                       "--parameter", "W2", tmp_path=tmp_path)
    assert (run.returncode, run.report["cell_notes"]) == (1, []), run.stdout
    assert run.report["parameters"]["W2"]["reason"] == "error"
    assert "(note: `act` is set at cell 2, line 3, which was not run: with --definitions-only" in run.stdout


def test_a_refused_call_in_a_gradient_function_still_fails_it(tmp_path: Path) -> None:
    # The same refusal that only stops a top-level cell is the parameter's failure when grading calls it.
    path = tmp_path / "student.ipynb"
    cells = [new_code_cell(c) for c in STUDENT_NOTEBOOK_CELLS[:-1]] + [new_code_cell(
        "def grad_b2(X, Y, W1, b1, W2, b2):\n"
        "    b2 = b2.clone().requires_grad_()\n"
        "    ((Y - forward(X, W1, b1, W2, b2)[1]) ** 2).sum().backward()\n"
        "    return b2.grad"
    )]
    nbformat.write(new_notebook(cells=cells), str(path))
    run = gradcheckers("check", str(path), *FAST, "--parameter", "b2", tmp_path=tmp_path)
    assert (run.returncode, reasons(run.report)) == (1, {"b2": "forbidden"}), run.stdout
    assert len(run.report["cell_notes"]) == 3


def test_a_cell_cannot_forge_or_hide_the_grader_s_notes(tmp_path: Path) -> None:
    path = tmp_path / "student.ipynb"
    hide = (  # empty the worker's record of the refusal it just made, to have the cell pass for clean
        "import torch\n"
        "try:\n"
        "    torch.ones(1).backward()\n"
        "except BaseException:\n"
        "    for cell in torch.Tensor.backward.__closure__:\n"
        "        if hasattr(cell.cell_contents, '__self__'):\n"
        "            cell.cell_contents.__self__.used.clear()"
    )
    forge = "print('cell 9 ran longer than 5 s and was cut off; the cells after it still ran')"
    cells = [new_code_cell(c) for c in [forge, *STUDENT_NOTEBOOK_CELLS]]
    nbformat.write(new_notebook(cells=cells), str(path))
    run = gradcheckers("check", str(path), *FAST, "--parameter", "b2", tmp_path=tmp_path)
    assert (run.returncode, run.report["cell_notes"]) == (0, STUDENT_NOTEBOOK_NOTES), run.stdout  # printed, not noted
    nbformat.write(new_notebook(cells=[new_code_cell(c) for c in [hide, *STUDENT_NOTEBOOK_CELLS]]), str(path))
    run = gradcheckers("check", str(path), *FAST, "--parameter", "b2", tmp_path=tmp_path)
    assert (run.returncode, run.report["load_reason"]) == (2, "forbidden"), run.stdout
    assert "Tensor.backward was used" in run.report["load_error"]
