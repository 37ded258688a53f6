"""The job pool: a dead job process is replaced and its job handed back; leaving the pool leaves no process."""

from __future__ import annotations

import os
import time

from gradcheckers.pool import LocalPool


def square_or_die(job: int, marker: str) -> int:
    if job == 3 or (job == 5 and not os.path.exists(marker)):
        if job == 5:
            open(marker, "w").close()
        os._exit(9)  # the job process dies with the job
    return job * job


def test_a_lost_job_is_reported_and_the_process_replaced(tmp_path: object) -> None:
    marker = str(tmp_path) + "/died-once"
    pool = LocalPool(2, square_or_die, extra=(marker,))
    outcomes: list[tuple[int, int | None]] = []
    seen: dict[int, int] = {}

    def done(job: int, result: int | None) -> bool:
        outcomes.append((job, result))
        seen[job] = seen.get(job, 0) + 1
        return result is None and seen[job] < 2  # one retry, as grade does

    pool.run(range(8), done)
    results = dict(outcomes)
    assert results == {0: 0, 1: 1, 2: 4, 3: None, 4: 16, 5: 25, 6: 36, 7: 49}
    assert seen[3] == 2  # retried once, lost again
    assert seen[5] == 2  # lost once (the marker), then done


def test_leaving_the_pool_kills_its_processes() -> None:
    pids: list[int] = []

    def done(job: int, result: int | None) -> bool:
        raise KeyboardInterrupt  # as Ctrl-C would, at the first result

    pool = LocalPool(2, _pid)
    try:
        pool.run(range(4), lambda job, result: (pids.append(result), done(job, result))[1])
    except KeyboardInterrupt:
        pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
        time.sleep(0.05)
    assert pids and not any(os.path.exists(f"/proc/{p}") for p in pids)


def _pid(job: int) -> int:
    time.sleep(0.2)
    return os.getpid()
