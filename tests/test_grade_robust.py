"""``gradcheckers grade`` under the events that used to lose a course (issue 12), through the real command line.

Each test runs a small course of slow-but-correct submissions (every gradient call sleeps, so the run lasts
long enough to be hit mid-way), hits it with one event (Ctrl-C, a killed job process, a killed sandbox
worker, a crash of the command itself), and checks the gradebook: every row there, nothing blamed on a
student, no process left behind.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

SUBMISSIONS = Path(__file__).parent / "submissions"
# Every gradient call sleeps 0.25 s: with 4 examples per parameter a student takes a few seconds, enough to
# be interrupted mid-run, and the course stays short.
SLOW = """

import time as _time

def _slowly(function):
    def call(*args):
        _time.sleep(0.25)
        return function(*args)
    return call

grad_W1, grad_b1, grad_W2, grad_b2 = map(_slowly, (grad_W1, grad_b1, grad_W2, grad_b2))
"""
OPTIONS = ["--examples", "4", "--dtypes", "float64", "--timeout", "20"]
# A guard against a hang, not a timing assertion: a healthy run of these courses takes well under a minute.
HANG_S = 240


def make_course(root: Path, students: int) -> Path:
    course = root / "course"
    course.mkdir()
    text = (SUBMISSIONS / "correct.py").read_text() + SLOW
    for i in range(students):
        (course / f"s{i}.py").write_text(text)
    return course


def start(course: Path, *extra: str, jobs: int = 2) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gradcheckers", "grade", str(course), "--jobs", str(jobs), *OPTIONS,
         "--csv", str(course.parent / "grades.csv"), "--reports", str(course.parent / "reports"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=course.parent,
    )


def grade(course: Path, *extra: str, jobs: int = 2) -> tuple[int, str]:
    proc = start(course, *extra, jobs=jobs)
    out, err = proc.communicate(timeout=HANG_S)
    assert "Traceback" not in err, err
    return proc.returncode, out


def query(course: Path, sql: str) -> list[tuple[object, ...]]:
    path = course.parent / "gradebook.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        try:
            return list(db.execute(sql))
        except sqlite3.OperationalError:  # the tables are being created
            return []


def _processes() -> dict[int, tuple[int, str]]:
    """pid: (parent pid, command line) of every live process (zombies are dead, only not yet reaped)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z":
            found[int(entry)] = (int(fields[1]), cmdline)
    return found


def descendants(pid: int) -> dict[int, str]:
    processes = _processes()
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, cmdline) in processes.items():
            if ppid == parent and child not in found:
                found[child] = cmdline
                frontier.append(child)
    return found


def wait_for(condition: Callable[[], object], what: str) -> object:
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def sandbox_workers(pid: int) -> list[int]:
    """Sandbox worker processes under ``pid``: the children of the fork servers (``_worker.py``)."""
    tree = descendants(pid)
    processes = _processes()
    servers = {p for p, cmdline in tree.items() if "_worker.py" in cmdline}
    return [p for p in tree if processes.get(p, (0, ""))[0] in servers]


def job_processes_grading(pid: int) -> list[int]:
    """Job processes under ``pid`` that are grading right now (their fork server has a worker)."""
    processes = _processes()
    busy = set()
    for worker in sandbox_workers(pid):
        server = processes.get(worker, (0, ""))[0]
        busy.add(processes.get(server, (0, ""))[0])
    return sorted(busy - {0})


def gone(pids: list[int] | dict[int, str]) -> bool:
    live = _processes()
    return not [p for p in pids if p in live]


def test_ctrl_c_keeps_every_finished_row_kills_every_process_and_resumes(tmp_path: Path) -> None:
    course = make_course(tmp_path, 6)
    proc = start(course)
    wait_for(lambda: query(course, "SELECT student FROM results"), "a first result")
    tree = descendants(proc.pid)
    assert tree, "no job processes"
    tree.update(descendants(proc.pid))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err, err
    kept = {row[0] for row in query(course, "SELECT student FROM results")}
    assert 1 <= len(kept) < 6
    assert f"run the same command again to grade the {6 - len(kept)} left" in out
    wait_for(lambda: gone(tree), "every process of the run to end")  # nothing left behind
    # The CSV is an export of what was graded, complete for it.
    assert len((tmp_path / "grades.csv").read_text().splitlines()) == 1 + len(kept)

    code, out = grade(course)
    assert code == 0
    assert f"This run: {6 - len(kept)} graded" in out and f"{len(kept)} resumed unchanged" in out
    assert sorted(row[0] for row in query(course, "SELECT student FROM results WHERE status = 'passed'")) == [
        f"s{i}" for i in range(6)]


def test_a_killed_job_process_is_replaced_and_its_submission_retried(tmp_path: Path) -> None:
    course = make_course(tmp_path, 4)
    proc = start(course)
    victim = wait_for(lambda: job_processes_grading(proc.pid), "a job process at work")[0]  # type: ignore[index]
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 0 and "Traceback" not in err, out + err
    rows = query(course, "SELECT student, status FROM results ORDER BY student")
    assert rows == [(f"s{i}", "passed") for i in range(4)]
    retried = query(course, "SELECT student FROM events WHERE event = 'retry'")
    assert len(retried) == 1
    assert query(course, f"SELECT attempts FROM results WHERE student = '{retried[0][0]}'") == [(2,)]
    assert "1 retried after a lost job process" in out


def test_a_sandbox_worker_killed_from_outside_does_not_fail_the_student(tmp_path: Path) -> None:
    course = make_course(tmp_path, 2)
    proc = start(course, jobs=1)
    victim = wait_for(lambda: sandbox_workers(proc.pid), "a sandbox worker")[0]  # type: ignore[index]
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 0 and "Traceback" not in err, out + err
    # The call is run again in a fresh worker: no verdict of "error", nothing about global state or randomness.
    assert query(course, "SELECT student, status FROM results ORDER BY student") == [("s0", "passed"), ("s1", "passed")]


def test_after_a_crash_only_what_is_missing_is_graded_and_a_changed_submission_is_regraded(tmp_path: Path) -> None:
    course = make_course(tmp_path, 4)
    proc = start(course, jobs=1)
    wait_for(lambda: query(course, "SELECT student FROM results"), "a first result")
    proc.kill()  # the command itself dies: no handler, no exports
    proc.communicate(timeout=HANG_S)
    kept = {row[0] for row in query(course, "SELECT student FROM results")}
    assert 1 <= len(kept) < 4

    code, out = grade(course)
    assert code == 0
    assert f"This run: {4 - len(kept)} graded in" in out and f"{len(kept)} resumed unchanged" in out
    graded = query(course, "SELECT student FROM events WHERE event = 'graded' ORDER BY id")
    assert sorted(row[0] for row in graded) == [f"s{i}" for i in range(4)]  # each exactly once

    # A changed submission is graded again (and now fails); the others are not.
    (course / "s1.py").write_text((SUBMISSIONS / "gate_wrong_shape.py").read_text())
    code, out = grade(course)
    assert code == 0 and "This run: 1 graded in" in out and "(1 regraded), 3 resumed unchanged" in out
    assert query(course, "SELECT status FROM results WHERE student = 's1'") == [("failed",)]
    # --regrade grades everything again, whatever the gradebook holds.
    code, out = grade(course, "--regrade", "--examples", "2")
    assert code == 0 and "This run: 4 graded in" in out


def test_a_dask_local_cluster_grades_every_submission_exactly_once_when_a_worker_dies(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    distributed = pytest.importorskip("distributed")
    course = make_course(tmp_path, 4)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                                  processes=True) as cluster, distributed.Client(cluster) as client:
        proc = start(course, "--scheduler", cluster.scheduler_address)
        workers = client.run(os.getpid)
        # A worker at work: one whose process has a sandbox worker beneath it. The scheduler runs its task again.
        busy = wait_for(lambda: [p for p in workers.values() if sandbox_workers(p)], "a Dask worker at work")
        os.kill(busy[0], signal.SIGKILL)  # type: ignore[index]
        out, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 0 and "Traceback" not in err, out + err
    assert query(course, "SELECT student, status FROM results ORDER BY student") == [
        (f"s{i}", "passed") for i in range(4)]
    graded = query(course, "SELECT student FROM events WHERE event = 'graded'")
    assert sorted(row[0] for row in graded) == [f"s{i}" for i in range(4)]  # every row exactly once
    # The Dask workers write to our own stderr: no Hypothesis warning about `random` (see test_cluster.py).
    assert "HypothesisDeprecationWarning" not in capfd.readouterr().err
