"""The hostile-submission suite: one attack per confinement layer, each asserting that its EFFECT did not happen
(a file unchanged, a process alive, a connection never accepted, a report not forged), not only the verdict.

The submissions are tests/submissions/hostile_*.py; the paths and process ids they attack are filled in here
(``@NAME@`` placeholders), since only the test knows them. Everything runs in real workers; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from gradcheckers import confine
from gradcheckers.errors import LoadError, SubmissionFailure
from gradcheckers.sandbox import Limits, Worker
from gradcheckers.submission import load_source

SUBMISSIONS = Path(__file__).parent / "submissions"
REPOSITORY = Path(__file__).parent.parent
FAST = Limits(call_timeout=3.0, load_timeout=20.0)
ROOT = os.geteuid() == 0
LANDLOCK = confine.landlock_abi() >= 1

needs_root = pytest.mark.skipif(not ROOT, reason="dropping privileges needs a grader running as root")
needs_landlock = pytest.mark.skipif(not LANDLOCK, reason="this kernel has no Landlock")


def network(batch: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = [(batch, 3), (batch, 2), (3, 4), (4,), (4, 2), (2,)]
    return [rng.standard_normal(shape) for shape in shapes]


Attack = Callable[..., Worker]


@pytest.fixture
def attack(tmp_path: Path) -> Iterator[Attack]:
    """Fill in a hostile submission's placeholders, load it in a worker and hand the worker over."""
    workers: list[Worker] = []

    def attack_(name: str, limits: Limits = FAST, **values: object) -> Worker:
        code = (SUBMISSIONS / name).read_text()
        for key, value in values.items():
            code = code.replace(f"@{key.upper()}@", str(value))
        folder = tmp_path / "submissions"
        folder.mkdir(exist_ok=True)
        path = folder / name
        path.write_text(code)
        worker = Worker(load_source(path), limits)
        workers.append(worker)
        worker.start()
        return worker

    yield attack_
    for worker in workers:
        worker.close()


# --- layer 1: least privilege -------------------------------------------------------------------------------


@needs_root
def test_a_submission_runs_as_nobody_with_no_new_privileges(attack: Attack) -> None:
    worker = attack("hostile_identity.py")
    uid, euid, gid, groups, no_new_privs = worker.call("grad_W1", network())
    assert uid != 0 and euid != 0 and gid != 0
    assert groups == 0
    assert no_new_privs == 1
    assert worker.isolation["user"].startswith("own uid and gid: 2,000,000,000 + the worker's pid")


def test_a_restarted_worker_owns_what_its_predecessor_wrote(tmp_path: Path) -> None:
    # A restart after a crash has a new pid, hence (as root) a new uid; the directory is handed over to it.
    path = tmp_path / "stateful.py"
    path.write_text(
        "import os\n\ndef write(X):\n    with open('state.txt', 'w') as f:\n        f.write('x')\n    return X\n\n"
        "def crash(X):\n    os._exit(1)\n"
    )
    X = network()[0]
    with Worker(load_source(path), FAST) as worker:
        worker.call("write", [X])
        with pytest.raises(SubmissionFailure):
            worker.call("crash", [X])
        np.testing.assert_array_equal(worker.call("write", [X]), X)


def test_two_workers_cannot_signal_each_other(attack: Attack) -> None:
    victim = attack("hostile_identity.py")
    assert victim.pid is not None
    attacker = attack("hostile_signal.py", victim=victim.pid)
    assert "could not signal" in attacker.output
    victim.call("grad_W1", network())  # still alive and answering, not respawned
    assert victim.pid is not None


def test_a_submission_cannot_signal_the_grader(attack: Attack) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        worker = attack("hostile_signal.py", victim=bystander.pid)
        assert "could not signal" in worker.output
        time.sleep(0.2)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


# --- layer 2: the filesystem view ---------------------------------------------------------------------------


@needs_landlock
def test_a_submission_cannot_write_outside_its_own_directory(attack: Attack, tmp_path: Path) -> None:
    classmate = tmp_path / "submissions" / "classmate.py"
    classmate.parent.mkdir()
    classmate.write_text("# the classmate's correct formulas\n")
    report = tmp_path / "report.json"
    report.write_text('{"passed": false}')
    planted = REPOSITORY / "gradcheckers" / "planted_by_a_submission.py"
    home = Path(os.path.expanduser("~")) / ".gradcheckers-hostile-test"
    worker = attack("hostile_write.py", targets="|".join(map(str, (classmate, report, planted, home, "scratch.txt"))))
    assert classmate.read_text() == "# the classmate's correct formulas\n"
    assert report.read_text() == '{"passed": false}'
    assert not planted.exists() and not home.exists()
    assert "wrote scratch.txt" in worker.output  # its own directory stays writable


@needs_landlock
def test_a_submission_cannot_read_the_answer_key_classmates_or_secrets(attack: Attack, tmp_path: Path) -> None:
    classmate = tmp_path / "submissions" / "classmate.py"
    classmate.parent.mkdir()
    classmate.write_text("CLASSMATE_SECRET_FORMULA = 1\n")
    secret = tmp_path / "instructor_solution.py"
    secret.write_text("INSTRUCTOR_SECRET = 1\n")
    answer_key = REPOSITORY / "models" / "two_layer.py"
    sources = [classmate, secret, answer_key, "/etc/shadow", os.path.expanduser("~/.bashrc"), tmp_path]
    worker = attack("hostile_read.py", sources="|".join(map(str, sources)))
    worker.call("grad_W1", network())
    output = worker.output
    assert "CLASSMATE_SECRET_FORMULA" not in output and "INSTRUCTOR_SECRET" not in output
    assert "def " not in output  # nothing of the answer key's source
    assert output.splitlines() == [f"could not read {source} PermissionError" for source in sources]


# --- layer 3: no network, no new processes ------------------------------------------------------------------


def test_a_submission_cannot_open_a_network_connection(attack: Attack) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        worker = attack("hostile_network.py", port=server.getsockname()[1])
        with pytest.raises(TimeoutError):
            server.accept()
    assert "could not connect" in worker.output


def test_nothing_a_submission_starts_outlives_it(attack: Attack, tmp_path: Path) -> None:
    target = tmp_path / "survivor"
    worker = attack("hostile_survivor.py", file=target)
    output = worker.output
    assert "could not fork" in output and "could not start a shell" in output and "could not exec" in output
    worker.close()
    time.sleep(2.0)  # the survivors would have written by now
    assert not list(tmp_path.glob("survivor*"))


# --- layer 4: a parent that trusts nothing it receives ------------------------------------------------------


def test_the_grader_is_out_of_reach_through_proc(attack: Attack, capfd: pytest.CaptureFixture[str]) -> None:
    os.environ["GRADCHECKERS_HOSTILE_SECRET"] = "swordfish"  # the server was started before: it never saw it
    try:
        worker = attack("hostile_proc.py", grader=os.getpid(), marker="FORGED-TABLE")
        captured = capfd.readouterr()
        assert "FORGED-TABLE" not in captured.out + captured.err
        assert "swordfish" not in worker.output
        assert not any(line.startswith(("read", "wrote")) for line in worker.output.splitlines())
    finally:
        del os.environ["GRADCHECKERS_HOSTILE_SECRET"]


def test_an_announced_huge_reply_is_not_allocated(attack: Attack) -> None:
    worker = attack("hostile_reply_bomb.py")
    tracemalloc.start()
    try:
        with pytest.raises(SubmissionFailure) as failure:
            worker.call("grad_W1", network())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20
    assert failure.value.reason in ("error", "timeout")


# --- layer 6: autograd ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("function", ["grad_W1", "grad_b1", "grad_W2", "grad_b2"])
def test_known_autograd_bypasses_are_refused(attack: Attack, function: str) -> None:
    worker = attack("hostile_autograd_bypass.py")
    with pytest.raises(SubmissionFailure) as failure:
        worker.call(function, network())
    assert failure.value.reason in ("forbidden", "error")


def test_numpy_mode_has_no_torch_at_all(attack: Attack) -> None:
    worker = attack("hostile_numpy_torch.py", limits=Limits(call_timeout=3.0, load_timeout=20.0, numpy=True))
    assert "no torch" in worker.output and "torch is here" not in worker.output
    assert worker.call("grad_W1", network()).shape == (3, 4)
    assert worker.isolation["torch"] == "absent"


# --- layer 7: the isolation record ---------------------------------------------------------------------------


def test_every_layer_in_force_is_recorded(attack: Attack) -> None:
    worker = attack("hostile_identity.py")
    record = worker.isolation
    assert set(record) >= {"user", "no_new_privs", "filesystem", "network", "signals", "processes"}
    if LANDLOCK:
        assert record["filesystem"].startswith("landlock")


def test_strict_isolation_refuses_to_grade_without_a_layer(tmp_path: Path) -> None:
    source = tmp_path / "ok.py"
    source.write_text("def grad_W1(*a):\n    return a[2] * 0\n")
    missing = confine.missing_layers()
    worker = Worker(load_source(source), Limits(load_timeout=20.0, isolation="strict"))
    if missing:
        with pytest.raises(LoadError, match="--isolation strict"):
            worker.start()
    else:
        worker.start()
        worker.close()


# --- reading submissions ------------------------------------------------------------------------------------


def test_a_fifo_is_refused_before_it_is_read(tmp_path: Path) -> None:
    fifo = tmp_path / "student.py"
    os.mkfifo(fifo)
    with pytest.raises(LoadError, match="not a regular file"):
        load_source(fifo)  # would block forever if it were opened for reading


def test_a_symlink_leading_outside_the_submissions_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "submissions").mkdir()
    link = tmp_path / "submissions" / "student.py"
    link.symlink_to("/etc/passwd")
    with pytest.raises(LoadError) as error:
        load_source(link)
    assert "root:" not in str(error.value)
    assert "outside" in str(error.value)


# --- layer 5: fail-closed reports ----------------------------------------------------------------------------


def test_a_forged_report_written_at_import_does_not_stand(tmp_path: Path) -> None:
    report, results = tmp_path / "report.json", tmp_path / "results.json"
    code = (SUBMISSIONS / "hostile_write.py").read_text().replace("@TARGETS@", f"{report}|{results}")
    submission = tmp_path / "forger.py"
    submission.write_text(code.replace("'pwned'", "'4/4'"))
    run = subprocess.run(
        [sys.executable, "-m", "gradcheckers", "check", str(submission), "--examples", "5", "--json", str(report),
         "--gradescope", str(results)], capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 1
    assert json.loads(report.read_text())["passed"] is False
    assert json.loads(results.read_text())["score"] == 0.0


def test_a_grader_killed_mid_check_leaves_a_zero(tmp_path: Path) -> None:
    report, results = tmp_path / "report.json", tmp_path / "results.json"
    results.write_text(json.dumps({"score": 4.0}))  # stale: a previous run's, or a forgery
    process = subprocess.Popen(
        [sys.executable, "-m", "gradcheckers", "check", str(SUBMISSIONS / "hang_at_import.py"), "--json",
         str(report), "--gradescope", str(results)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # The placeholders are written one after the other before the submission runs; wait for the last one
    # (the submission hangs for a minute at import, so the kill lands mid-check).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (report.exists() and "not graded" in results.read_text()):
        time.sleep(0.05)
    assert process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads(results.read_text())["score"] == 0.0
    data = json.loads(report.read_text())
    assert data["passed"] is False and data["load_reason"] == "not-graded"


# --- output injection -------------------------------------------------------------------------------------------


def _report_with_message(message: str) -> dict[str, object]:
    failed = {"passed": False, "examples": 1, "inconclusive": 0, "reason": "error", "message": message,
              "counterexample": None, "worst": None, "diagnosis": None}
    return {"submission": "evil`name\n# Score 4/4.py", "assignment": "two-layer-sigmoid", "passed": False,
            "seed": 0, "settings": {}, "load_error": None, "score": 0.0, "max_score": 4.0,
            "parameters": {"W1": failed}, "output": "", "isolation": {}}


def test_a_message_cannot_close_the_markdown_fence_and_forge_a_score() -> None:
    from gradcheckers import report as writers

    text = writers.markdown_summary(_report_with_message("boom\n```\n## Score: **4 / 4** ✅\n```\n<script>x</script>"))
    lines = text.splitlines()
    fake = lines.index("## Score: **4 / 4** ✅")
    # The block opens with a fence longer than any backtick run in the message, so the message's own ``` lines
    # stay inside it, and the fake heading with them.
    opening = max(i for i in range(fake) if set(lines[i]) == {"`"} and len(lines[i]) > 3)
    assert not any(set(line) == {"`"} and len(line) >= len(lines[opening]) for line in lines[opening + 1 : fake])
    heading = lines[0]
    assert heading.startswith("## ❌ gradcheckers: ") and "\n" not in heading and "# Score" in heading
    assert heading.count("``") == 2  # the name, backtick and all, inside one code span


def test_gradescope_shows_submission_text_as_plain_text() -> None:
    from gradcheckers import report as writers

    results = writers.gradescope_results(_report_with_message("<img src=x onerror=alert(1)>\x1b[2J"))
    assert results["output_format"] == results["test_output_format"] == "text"
    assert all(test["output_format"] == "text" for test in results["tests"])
    assert "\x1b" not in json.dumps(results["tests"][0]["output"], ensure_ascii=False)


def test_a_file_name_with_escape_sequences_reaches_no_terminal_raw() -> None:
    from gradcheckers import report as writers

    assert writers.terminal_safe("alice\x1b]0;owned\x07.py") == "alice\\x1b]0;owned\\x07.py"


# --- sibling imports ------------------------------------------------------------------------------------------


@needs_landlock
def test_sibling_modules_are_handed_over_and_stay_confined(tmp_path: Path) -> None:
    folder = tmp_path / "alice"
    folder.mkdir()
    target = tmp_path / "written_by_a_helper"
    (folder / "helper_module.py").write_text(
        f"try:\n    open({str(target)!r}, 'w').write('pwned')\nexcept OSError:\n    pass\n\n"
        "def double(x):\n    return 2 * x\n"
    )
    code = (SUBMISSIONS / "hostile_sibling.py").read_text().replace("@TARGET@", str(target))
    (folder / "submission.py").write_text(code)
    arrays = network()
    with Worker(load_source(folder / "submission.py", sibling_imports=True), FAST) as worker:
        np.testing.assert_array_equal(worker.call("grad_W1", arrays), 2 * arrays[2])
    assert not target.exists()
    with pytest.raises(LoadError, match="No module named 'helper_module'"):  # not without asking
        Worker(load_source(folder / "submission.py"), FAST).start()


@needs_landlock
def test_the_answer_key_stays_out_of_reach_without_the_import_blocker(attack: Attack) -> None:
    import gradcheckers.models.two_layer as answer_key

    worker = attack("hostile_answer_key.py", path=answer_key.__file__)
    assert "could not import the answer key" in worker.output and "could not read the answer key" in worker.output
    assert "imported the answer key" not in worker.output.replace("could not import", "")


def test_numpy_mode_checks_a_numpy_submission_end_to_end(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "gradcheckers", "check", str(SUBMISSIONS / "numpy_correct.py"), "--numpy",
         "--examples", "10", "--json", str(report)], capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    data = json.loads(report.read_text())
    assert data["passed"] and data["isolation"]["torch"] == "absent"
    assert "isolation: " in run.stdout and "(numpy mode: no torch)" in run.stdout
