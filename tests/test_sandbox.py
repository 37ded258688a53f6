"""Tests of gradcheckers.sandbox: every submission here runs in a real worker process; nothing is mocked.

Each misbehaving submission is a file in tests/submissions/ named after what it does.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from gradcheckers.errors import InvalidArgument, LoadError, SubmissionFailure
from gradcheckers.sandbox import Limits, Worker
from gradcheckers.submission import load_source

SUBMISSIONS = Path(__file__).parent / "submissions"
FAST = Limits(call_timeout=1.0, load_timeout=5.0)
PARAMETERS = ("W1", "b1", "W2", "b2")

# A secret in our environment that no worker may see. Set at import, so before this process starts its fork
# server: pytest imports every test module before it runs any test.
os.environ["GRADCHECKERS_TEST_SECRET"] = "hunter2"

OpenWorker = Callable[..., Worker]


@pytest.fixture
def open_worker() -> Iterator[OpenWorker]:
    """Start a worker for a fixture submission (by file name); every worker is closed after the test."""
    workers: list[Worker] = []

    def open_(name: str, limits: Limits = FAST, **load: bool) -> Worker:
        worker = Worker(load_source(SUBMISSIONS / name, **load), limits)
        workers.append(worker)
        worker.start()
        return worker

    yield open_
    for worker in workers:
        worker.close()


def network(batch: int = 4, dtype: type = np.float64, seed: int = 0) -> list[np.ndarray]:
    """X, Y, W1, b1, W2, b2 with n_feature=8, n_hidden=5, n_output=3."""
    rng = np.random.default_rng(seed)
    shapes = [(batch, 8), (batch, 3), (8, 5), (5,), (5, 3), (3,)]
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


def autograd(arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    X, Y, W1, b1, W2, b2 = (torch.tensor(a, requires_grad=True) for a in arrays)
    ((Y - (torch.sigmoid(X @ W1 + b1) @ W2 + b2)) ** 2).sum().backward()
    return {name: t.grad.numpy() for name, t in zip(PARAMETERS, (W1, b1, W2, b2))}  # type: ignore[union-attr]


def failure(worker: Worker, function: str, args: list[np.ndarray] | None = None, **kwargs: str) -> SubmissionFailure:
    with pytest.raises(SubmissionFailure) as caught:
        worker.call(function, network() if args is None else args, **kwargs)
    return caught.value


# --- what a good submission gets ----------------------------------------------------------------------------


def test_correct_gradients_come_back_as_plain_arrays(open_worker: OpenWorker) -> None:
    worker = open_worker("correct.py")
    assert {"grad_W1", "grad_b1", "grad_W2", "grad_b2"} <= worker.defined
    arrays = network()
    expected = autograd(arrays)
    for name in PARAMETERS:
        result = worker.call(f"grad_{name}", arrays)
        assert type(result) is np.ndarray and result.dtype == np.float64 and result.flags.writeable
        np.testing.assert_allclose(result, expected[name], rtol=1e-12)


def test_float32_and_empty_batches_cross_unchanged(open_worker: OpenWorker) -> None:
    worker = open_worker("correct.py")
    assert worker.call("grad_W1", network(dtype=np.float32)).dtype == np.float32
    np.testing.assert_array_equal(worker.call("grad_W1", network(batch=0)), np.zeros((8, 5)))


def test_each_call_gets_fresh_copies_of_its_arguments(open_worker: OpenWorker) -> None:
    arrays = network()
    copies = [a.copy() for a in arrays]
    open_worker("inplace.py").call("grad_b2", arrays)
    for array, copy in zip(arrays, copies):
        np.testing.assert_array_equal(array, copy)


def test_a_mapping_is_indexed_by_key(open_worker: OpenWorker) -> None:
    worker = open_worker("gradients_mapping.py")
    arrays = network()
    expected = autograd(arrays)
    for name in PARAMETERS:
        np.testing.assert_allclose(worker.call("gradients", arrays, key=name), expected[name], rtol=1e-12)
    missing = failure(worker, "gradients", key="W3")
    assert missing.reason == "missing"
    assert missing.message == "gradients() returned a mapping without the key 'W3' (its keys: 'W1', 'b1', 'W2', 'b2')"


def test_tensors_are_converted_to_numbers(open_worker: OpenWorker) -> None:
    worker = open_worker("wrong_return.py")
    args = network()
    assert worker.call("as_bfloat16", args).tolist() == [1.5, -2.0]  # widened to float32, exactly
    big_endian = worker.call("as_numpy", args)
    assert big_endian.dtype == np.float64 and big_endian.dtype.isnative and big_endian.tolist()[1] == [3, 4, 5]
    np.testing.assert_array_equal(worker.call("as_sparse", args), np.eye(2, dtype=np.float32))
    assert worker.call("needs_grad", args).tolist() == [3.0, 3.0]


def test_a_notebook_runs_its_definitions_only(open_worker: OpenWorker) -> None:
    # The notebook also installs packages and trains in a `while True` loop: loading it must not run either.
    worker = open_worker("notebook_magics.ipynb", definitions_only=True)
    arrays = network()
    np.testing.assert_allclose(worker.call("grad_W1", arrays), autograd(arrays)["W1"], rtol=1e-12)
    uses_net = failure(worker, "uses_net", arrays[:1])
    assert uses_net.reason == "error"
    assert uses_net.message == (
        "uses_net() raised NameError: name 'net' is not defined at cell 7, line 10 (in uses_net): `return net(X)`\n"
        "(note: `net` is set at cell 6, line 1, which was not run: with --definitions-only, a notebook's imports, "
        "functions, classes and constant assignments are all that runs; leave that option out to run every cell)"
    )


# --- the submission's fault: reasons and messages -----------------------------------------------------------


def test_missing_and_uncallable_functions(open_worker: OpenWorker) -> None:
    worker = open_worker("missing_function.py")
    assert worker.defined == {"grad_W1"}
    missing = failure(worker, "grad_W2")
    assert (missing.reason, missing.message) == (
        "missing",
        "the submission does not define grad_W2(): define it at the top level of the file (functions it defines: "
        "grad_W1)",
    )
    not_callable = failure(worker, "grad_b1")
    assert (not_callable.reason, not_callable.message) == (
        "missing",
        "grad_b1 in the submission is a int, not a function",
    )


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (
            "grad_W1",
            "grad_W1() raised ValueError: not derived yet at line 5 (in grad_W1): "
            '`raise ValueError("not derived yet")`',
        ),
        (
            "grad_b1",
            "grad_b1() raised RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x8 and 4x3) at line 9 "
            "(in grad_b1): `return X @ Y  # (batch, n_feature) @ (batch, n_output): shapes do not fit`",
        ),
    ],
)
def test_an_exception_names_its_line_in_the_submission(open_worker: OpenWorker, function: str, message: str) -> None:
    raised = failure(open_worker("raises.py"), function)
    assert (raised.reason, raised.message) == ("error", message)


def test_an_enormous_exception_message_is_cut(open_worker: OpenWorker) -> None:
    raised = failure(open_worker("raises.py"), "huge_message")
    assert raised.reason == "error" and 2000 < len(raised.message) < 3000


@pytest.mark.parametrize(
    ("function", "key", "message"),
    [
        ("grad_W1", None, "grad_W1() returned list; expected a torch.Tensor (or a numpy.ndarray)"),
        ("grad_b1", None, "grad_b1() returned float; expected a torch.Tensor (or a numpy.ndarray)"),
        (
            "grad_W2",
            None,
            "grad_W2() returned a numpy.ndarray of dtype object, which cannot be checked: return real numbers",
        ),
        (
            "grad_b2",
            None,
            "grad_b2() returned a torch.Tensor of dtype complex64, which cannot be checked: return real numbers",
        ),
        ("gradients", "W1", "gradients() returned tuple; expected a mapping (such as a dict) with the key 'W1'"),
    ],
)
def test_results_that_are_not_arrays_of_numbers(
    open_worker: OpenWorker, function: str, key: str | None, message: str
) -> None:
    wrong = failure(open_worker("wrong_return.py"), function, **({"key": key} if key else {}))
    assert (wrong.reason, wrong.message) == ("error", message)


@pytest.mark.parametrize(
    ("function", "changed"),
    [("grad_W1", "argument 1 (X)"), ("grad_b1", "argument 3 (W1)"), ("grad_W2", "argument 6 (b2)")],
)
def test_changing_an_input_in_place(open_worker: OpenWorker, function: str, changed: str) -> None:
    mutated = failure(open_worker("inplace.py"), function)
    assert (mutated.reason, mutated.message) == (
        "mutated-input",
        f"{function}() changed its input {changed} in place: gradient functions must leave their inputs as they "
        "were (write `x = x * 2`, not `x *= 2`, `x.mul_(2)` or `x[...] = …`)",
    )


@pytest.mark.parametrize(
    ("name", "function", "api", "line"),
    [
        ("autograd_backward.py", "grad_W1", "Tensor.backward", "line 9"),
        ("autograd_grad.py", "grad_W1", "torch.autograd.grad", "line 9"),
        ("func_grad.py", "grad_W1", "torch.func.grad", "line 12"),
        ("functional_jacobian.py", "grad_W1", "torch.autograd.functional.jacobian", "line 8"),
        ("functorch_vjp.py", "grad_W1", "functorch.vjp", "line 8"),
        ("forward_ad.py", "grad_b2", "torch.autograd.forward_ad.dual_level", "line 9"),
        ("autograd_swallowed.py", "grad_b2", "Tensor.backward", "line 8"),
    ],
)
def test_autograd_is_forbidden(open_worker: OpenWorker, name: str, function: str, api: str, line: str) -> None:
    forbidden = failure(open_worker(name), function)
    assert forbidden.reason == "forbidden"
    assert forbidden.message.startswith(f"{function}(): {api} was used at {line} (in {function}): `")
    assert forbidden.message.endswith(
        "`, which is forbidden: analytic gradients must be derived by hand, not computed with autograd"
    )


def test_the_autograd_engine_itself_is_guarded(open_worker: OpenWorker, tmp_path: Path) -> None:
    # A path the named guards do not cover still ends in the engine.
    path = tmp_path / "engine.py"
    path.write_text(
        "import torch\nfrom torch.autograd.graph import _engine_run_backward\n\n"
        "def grad_b2(X, Y, W1, b1, W2, b2):\n"
        "    out = b2.clone().requires_grad_().sum()\n"
        "    return _engine_run_backward((out,), (torch.ones(()),), False, False, (), False, False)[0]\n"
    )
    with Worker(load_source(path), FAST) as worker:
        forbidden = failure(worker, "grad_b2")
    assert forbidden.reason == "forbidden"
    assert forbidden.message.startswith("grad_b2(): the autograd engine (a backward pass) was used at line 6")


def test_a_zero_dimensional_result_keeps_its_shape(tmp_path: Path) -> None:
    # A loss's value or a scalar parameter's gradient: np.ascontiguousarray used to add an axis, so a correct
    # 0-d answer came back as shape (1,) and was judged a wrong shape.
    path = tmp_path / "scalars.py"
    path.write_text(
        "import numpy as np\nimport torch\n\n"
        "def as_tensor(X, Y, W1, b1, W2, b2):\n    return (X * 0).sum()\n\n"
        "def as_array(X, Y, W1, b1, W2, b2):\n    return np.array(2.5)\n\n"
        "def as_numpy_scalar(X, Y, W1, b1, W2, b2):\n    return np.float64(2.5)\n"
    )
    with Worker(load_source(path), FAST) as worker:
        results = {name: worker.call(name, network()) for name in ("as_tensor", "as_array", "as_numpy_scalar")}
    assert {name: r.shape for name, r in results.items()} == dict.fromkeys(results, ())
    assert float(results["as_numpy_scalar"]) == 2.5


def test_autograd_can_be_allowed(open_worker: OpenWorker) -> None:
    worker = open_worker("autograd_grad.py", Limits(call_timeout=5.0, allow_autograd=True))
    arrays = network()
    np.testing.assert_allclose(worker.call("grad_W1", arrays), autograd(arrays)["W1"], rtol=1e-12)


def test_vmap_is_not_differentiation(open_worker: OpenWorker) -> None:
    X = network()[0]
    np.testing.assert_array_equal(open_worker("func_grad.py").call("batched", [X]), 2 * X)


@pytest.mark.parametrize(
    ("name", "package"), [("import_gradcheckers.py", "gradcheckers"), ("import_models.py", "models")]
)
def test_importing_the_checker_while_loading_is_forbidden(name: str, package: str) -> None:
    worker = Worker(load_source(SUBMISSIONS / name), FAST)
    with pytest.raises(LoadError) as caught:
        worker.start()
    worker.close()
    assert caught.value.reason == "forbidden"  # type: ignore[attr-defined]
    assert str(caught.value).startswith(f"{SUBMISSIONS / name}: `import {package}` at line 3: `")
    assert str(caught.value).endswith(
        "is forbidden: a submission may not use the checker or its reference models; derive the gradients by hand"
    )


def test_importing_the_checker_in_a_call_is_forbidden_even_if_caught(open_worker: OpenWorker) -> None:
    forbidden = failure(open_worker("import_in_call.py"), "grad_W1")
    assert forbidden.reason == "forbidden"
    assert forbidden.message.startswith("grad_W1(): `import gradcheckers` at line 6 (in grad_W1): ")


def test_monkeypatching_only_fools_the_submissions_own_process(open_worker: OpenWorker) -> None:
    # The submission replaces torch.allclose, numpy.allclose and Tensor.__eq__ with yes-men, then returns zeros.
    arrays = network()
    result = open_worker("monkeypatch_allclose.py").call("grad_W1", arrays)
    assert not np.allclose(result, autograd(arrays)["W1"])
    assert not torch.allclose(torch.from_numpy(result), torch.from_numpy(autograd(arrays)["W1"]))


# --- time, memory and output ------------------------------------------------------------------------------


@pytest.mark.parametrize("function", ["grad_W1", "grad_b1"])  # a busy loop, then a sleep
def test_a_hang_costs_one_timeout_and_the_next_call_works(open_worker: OpenWorker, function: str) -> None:
    worker = open_worker("hang.py")
    before = worker.pid
    started = time.monotonic()
    timeout = failure(worker, function)
    elapsed = time.monotonic() - started
    assert (timeout.reason, timeout.message) == (
        "timeout",
        f"{function}() did not return within 1 s and was stopped: look for a loop that never ends or work that "
        "grows too fast with the input size",
    )
    assert 1.0 <= elapsed < 3.0
    assert worker.pid is None
    assert worker.call("grad_W2", network()).shape == (8, 8)
    assert worker.pid not in (None, before)


def test_the_cpu_time_limit_stops_a_busy_loop(open_worker: OpenWorker) -> None:
    worker = open_worker("hang.py", Limits(call_timeout=30.0, cpu_seconds=1))
    started = time.monotonic()
    timeout = failure(worker, "grad_W1")
    assert time.monotonic() - started < 10.0
    assert (timeout.reason, timeout.message) == (
        "timeout",
        "grad_W1() used up the worker's CPU-time limit of 1 s and was stopped",
    )


@pytest.mark.parametrize(("function", "line"), [("grad_W1", 7), ("grad_b1", 11)])  # torch, then a Python list
def test_a_memory_bomb_fails_the_call_and_not_the_worker(open_worker: OpenWorker, function: str, line: int) -> None:
    worker = open_worker("memory_bomb.py")
    memory = failure(worker, function)
    assert memory.reason == "memory"
    assert memory.message.startswith(f"{function}() ran out of memory at line {line} (in {function}): `")
    assert "it needs more than the 2048 MB a submission may use" in memory.message
    assert worker.call("grad_W2", network()).shape == (8, 8)


def test_an_output_flood_is_cut_and_counted(open_worker: OpenWorker) -> None:
    worker = open_worker("output_flood.py", Limits(call_timeout=10.0, output_limit=1000))
    assert worker.call("grad_W1", network()).shape == (8, 8)
    kept, _, note = worker.output.rpartition("\n")
    assert kept.startswith("loading\ndebugging output debugging output")
    assert len(kept.encode()) == 1000
    dropped = int(note.removeprefix("[… ").removesuffix(" more bytes of output were dropped]"))
    assert dropped > 50 * 10**6


# --- the process ending ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason", "message"),
    [
        (
            "exit_at_import.py",
            "exit",
            "{path} tried to end the program (SystemExit(3)) while loading at line 3: `sys.exit(3)`: a submission "
            'must only define functions; remove the call or put it under `if __name__ == "__main__":`',
        ),
        (
            "os_exit_at_import.py",
            "exit",
            "{path}, while loading: the worker process exited with status 4 (os._exit, or a crash in native code); "
            "its top-level code must only define functions",
        ),
        (
            "segfault_at_import.py",
            "crash",
            "{path}, while loading: the worker process died with SIGSEGV (segmentation fault); its top-level code "
            "must only define functions",
        ),
        (
            "memory_bomb_at_import.py",
            "memory",
            "{path} ran out of memory while loading at line 3: `CACHE = [0] * 10**10`: its top-level code needs "
            "more than the 2048 MB a submission may use",
        ),
        (
            "load_error.py",
            "error",
            "{path} raised an exception while loading (its top-level code ran into an error):\n"
            "  line 8, in <module>: HIDDEN = _setup()\n"
            "  line 5, in _setup: return hidden_size * 2  # noqa: F821\n"
            "NameError: name 'hidden_size' is not defined",
        ),
    ],
)
def test_failing_while_loading_is_a_load_error(name: str, reason: str, message: str) -> None:
    path = SUBMISSIONS / name
    worker = Worker(load_source(path), FAST)
    with pytest.raises(LoadError) as caught:
        worker.start()
    worker.close()
    assert caught.value.reason == reason  # type: ignore[attr-defined]
    assert str(caught.value) == message.format(path=path)


def test_hanging_while_loading_is_a_load_error() -> None:
    worker = Worker(load_source(SUBMISSIONS / "hang_at_import.py"), Limits(load_timeout=1.0))
    started = time.monotonic()
    with pytest.raises(LoadError, match=r"did not finish loading within 1 s: its top-level code must only define"):
        worker.start()
    assert time.monotonic() - started < 3.0
    worker.close()


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (
            "grad_W1",
            "grad_W1() tried to end the program (SystemExit('done')) at line 8 (in grad_W1): `sys.exit(\"done\")`: "
            "a gradient function must return its result, not exit",
        ),
        (
            "grad_W2",
            "grad_W2() tried to end the program (SystemExit(None)) at line 16 (in grad_W2): `raise SystemExit`: "
            "a gradient function must return its result, not exit",
        ),
        (
            "grad_b1",
            "grad_b1(): the worker process exited with status 5 (os._exit, or a crash in native code); a gradient "
            "function must return its result, not end the process",
        ),
    ],
)
def test_exiting_in_a_call_fails_the_call_only(open_worker: OpenWorker, function: str, message: str) -> None:
    worker = open_worker("exit_in_call.py")
    exited = failure(worker, function)
    assert (exited.reason, exited.message) == ("error", message)
    assert worker.call("grad_b2", network()).shape == (3,)


@pytest.mark.parametrize(
    ("function", "death"),
    [
        ("grad_W1", "SIGSEGV (segmentation fault)"),
        ("grad_b1", "SIGKILL (killed; the system may have run out of memory)"),
    ],
)
def test_a_crash_in_a_call_fails_the_call_only(open_worker: OpenWorker, function: str, death: str) -> None:
    worker = open_worker("segfault_in_call.py")
    crashed = failure(worker, function)
    assert (crashed.reason, crashed.message) == (
        "error",
        f"{function}(): the worker process died with {death}; a gradient function must return its result, not end "
        "the process",
    )
    assert worker.call("grad_W2", network()).shape == (8, 8)


@pytest.mark.parametrize(
    ("function", "problem"),
    [("grad_W1", "a header that is not JSON"), ("claim_huge", "a 18446744073709551615-byte payload where at most")],
)
def test_garbage_on_the_reply_channel_is_a_crash_not_our_exception(
    open_worker: OpenWorker, function: str, problem: str
) -> None:
    worker = open_worker("garble.py")
    garbled = failure(worker, function)
    assert garbled.reason == "error"
    assert garbled.message.startswith(f"{function}() left the worker sending a malformed reply ({problem}")
    assert worker.call("grad_W2", network()).shape == (8, 8)


def test_a_submission_that_no_longer_loads_fails_the_call_after_a_crash(tmp_path: Path) -> None:
    # The worker's directory survives a restart, so this loads once and refuses the second time.
    path = tmp_path / "once.py"
    path.write_text(
        "import os\n"
        "if os.path.exists('loaded'):\n"
        "    raise RuntimeError('loaded twice')\n"
        "open('loaded', 'w').close()\n"
        "\n"
        "def crash(X):\n"
        "    os._exit(1)\n"
    )
    with Worker(load_source(path), FAST) as worker:
        assert failure(worker, "crash", network()[:1]).reason == "error"
        again = failure(worker, "crash", network()[:1])
    assert again.reason == "error"
    assert again.message == (
        "the submission could not be loaded again in a fresh worker: "
        f"{path} raised an exception while loading (its top-level code ran into an error):\n"
        "  line 3, in <module>: raise RuntimeError('loaded twice')\n"
        "RuntimeError: loaded twice"
    )


def _kill_while_loading(worker: Worker, times: int) -> None:
    """Start ``worker`` while another thread SIGKILLs it ``times`` times during the load (a person, the OOM killer)."""
    import threading

    def killer() -> None:
        killed: set[int] = set()
        deadline = time.monotonic() + 20
        while len(killed) < times and time.monotonic() < deadline:
            pid = worker.pid
            if pid is not None and pid not in killed:
                time.sleep(0.3)  # inside the submission's top-level sleep
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            time.sleep(0.005)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        worker.start()
    finally:
        thread.join()


def test_a_worker_killed_from_outside_while_loading_is_loaded_again(tmp_path: Path) -> None:
    # Seen in CI: the grader killed from outside during the load became "not checkable". A SIGKILL we did not
    # send is not the submission's doing until it happens twice, as in a call.
    path = tmp_path / "slow_load.py"
    path.write_text("import time\ntime.sleep(1.0)\n\n" + (SUBMISSIONS / "correct.py").read_text())
    worker = Worker(load_source(path), FAST)  # not `with`: that would load it before the killer runs
    try:
        _kill_while_loading(worker, times=1)
        assert worker.call("grad_b2", network()).shape == (3,)
    finally:
        worker.close()


def test_a_worker_killed_twice_while_loading_fails_to_load(tmp_path: Path) -> None:
    path = tmp_path / "slow_load.py"
    path.write_text("import time\ntime.sleep(1.0)\n\n" + (SUBMISSIONS / "correct.py").read_text())
    worker = Worker(load_source(path), FAST)
    try:
        with pytest.raises(LoadError) as error:
            _kill_while_loading(worker, times=2)
    finally:
        worker.close()
    assert error.value.reason == "crash"  # type: ignore[attr-defined]
    assert "SIGKILL" in str(error.value)


def _alive(pid: int | None) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"  # a zombie is dead, just not yet reaped
    except FileNotFoundError:
        return False


def test_a_dead_fork_server_is_replaced(open_worker: OpenWorker) -> None:
    from gradcheckers import sandbox

    worker = open_worker("correct.py")
    pid = worker.pid
    os.kill(sandbox._server().process.pid, signal.SIGKILL)  # its workers die with it, a moment later
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.01)
    lost = failure(worker, "grad_b2")
    assert (lost.reason, lost.message) == (
        "error",
        "grad_b2(): the worker process was lost with the process that starts workers, which is not necessarily "
        "the submission's fault: check it again",
    )
    assert worker.call("grad_b2", network()).shape == (3,)


# --- the worker's surroundings ------------------------------------------------------------------------------


def test_the_worker_sees_a_scrubbed_environment_and_its_own_directory(open_worker: OpenWorker) -> None:
    worker = open_worker("environment_probe.py")
    secrets, home_is_cwd, tmp_is_cwd, threads, scratch, entries, is_main = worker.call("probe", network()[:1])
    assert secrets == 0
    assert home_is_cwd and tmp_is_cwd
    assert threads == 1
    assert scratch and entries == 1  # a fresh, empty directory, with only what the call wrote
    assert not is_main
    workdir = worker.output.removeprefix("loaded in ").strip()
    assert os.path.isdir(workdir)
    worker.close()
    assert not os.path.exists(workdir)
    assert worker.output.startswith("loaded in ")  # still readable after close


def test_the_server_environment_holds_no_secret() -> None:
    from gradcheckers import sandbox

    sandbox.prestart()
    server = sandbox._server()
    with open(f"/proc/{server.process.pid}/environ", "rb") as environ:
        assert b"GRADCHECKERS_TEST_SECRET" not in environ.read()


def test_close_and_garbage_collection_end_the_process(open_worker: OpenWorker) -> None:
    worker = open_worker("correct.py")
    pid = worker.pid
    assert pid is not None
    worker.close()
    worker.close()  # idempotent
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    forgotten = Worker(load_source(SUBMISSIONS / "correct.py"), FAST)
    forgotten.start()
    pid = forgotten.pid
    assert pid is not None
    del forgotten
    gc.collect()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_context_manager_starts_and_closes() -> None:
    with Worker(load_source(SUBMISSIONS / "correct.py"), FAST) as worker:
        worker.start()  # a second start is a no-op
        assert worker.call("grad_b2", network()).shape == (3,)
    with pytest.raises(RuntimeError, match="this Worker is closed"):
        worker.call("grad_b2", network())


# --- the caller's mistakes -----------------------------------------------------------------------------------


def test_calling_before_start_is_a_programming_error() -> None:
    worker = Worker(load_source(SUBMISSIONS / "correct.py"), FAST)
    with pytest.raises(RuntimeError, match=r"call start\(\) first"):
        worker.call("grad_W1", network())
    worker.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([[1.0, 2.0]], r"args\[0\]=list: expected a numpy.ndarray"),
        ([np.array([object()])], r"args\[0\].dtype=object: expected one of bool, "),
    ],
)
def test_arguments_must_be_numeric_arrays(open_worker: OpenWorker, args: list[object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        open_worker("correct.py").call("grad_W1", args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"call_timeout": 0}, "call_timeout=0: expected a positive number"),
        ({"memory_mb": 1.5}, "memory_mb=1.5: expected a positive integer"),
        ({"output_limit": True}, "output_limit=True: expected a positive number"),
    ],
)
def test_limits_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=f"^{message}$"):
        Limits(**kwargs)  # type: ignore[arg-type]


# --- CUDA, where there is one ---------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_calls_match_cpu_calls(open_worker: OpenWorker) -> None:
    worker = open_worker("correct.py", Limits(call_timeout=60.0, load_timeout=60.0))
    arrays = network()
    on_cpu = worker.call("grad_W1", arrays)
    np.testing.assert_allclose(worker.call("grad_W1", arrays, device="cuda"), on_cpu, rtol=1e-10)
    np.testing.assert_allclose(worker.call("grad_W1", arrays), on_cpu, rtol=1e-10)
    bomb = open_worker("memory_bomb.py", Limits(call_timeout=60.0, load_timeout=60.0))
    assert failure(bomb, "on_device", device="cuda").reason == "memory"
    assert failure(bomb, "on_device").reason == "memory"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_asking_for_cuda_without_it_is_the_callers_mistake(open_worker: OpenWorker) -> None:
    worker = open_worker("correct.py")
    with pytest.raises(InvalidArgument, match=r"^device='cuda': CUDA is not available on this machine$"):
        worker.call("grad_W1", network(), device="cuda")
    assert worker.call("grad_b2", network()).shape == (3,)


# --- notebooks: a refused call, an error or an overlong cell stops that cell only -----------------------------


def _notebook_worker(tmp_path: Path, *cells: str, limits: Limits = FAST) -> Worker:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    path = tmp_path / "student.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(c) for c in cells]), str(path))
    return Worker(load_source(path), limits)


def test_a_refused_call_at_the_top_of_a_py_file_still_fails_the_load(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_text("import torch\ntorch.ones(1).backward()\n")
    worker = Worker(load_source(path), FAST)
    with pytest.raises(LoadError) as caught:
        worker.start()
    worker.close()
    assert caught.value.reason == "forbidden"  # type: ignore[attr-defined]


def test_a_notebook_cell_that_swallows_its_cut_off_meets_the_load_timeout(tmp_path: Path) -> None:
    # The cut-off is an exception; a bare `except` in a loop can outlast it, but not the whole load's timeout.
    worker = _notebook_worker(tmp_path, "import time\nwhile True:\n    try:\n        time.sleep(1)\n    except:\n"
                              "        pass", limits=Limits(load_timeout=8.0))
    with pytest.raises(LoadError) as caught:
        worker.start()
    worker.close()
    assert caught.value.reason == "timeout"  # type: ignore[attr-defined]
    assert str(caught.value).endswith(
        "did not finish loading within 8 s: its cells ran longer than that in all (each is cut off after 5 s, unless "
        "it catches every cut-off, e.g. with a bare `except:` in a loop): move long-running work into functions that "
        "are not called"
    )


def test_the_guards_stay_after_a_cell_is_stopped(tmp_path: Path) -> None:
    # A cell that catches its refusal and turns grad mode back on is refused again; a grading call still is.
    worker = _notebook_worker(
        tmp_path,
        "import torch\ntry:\n    torch.ones(1).backward()\nexcept BaseException:\n    torch.set_grad_enabled(True)",
        "def grad_W1(X, Y, W1, b1, W2, b2):\n    return torch.autograd.grad(W1.sum(), W1)[0]",
    )
    with worker:
        worker.start()
        assert worker.cell_notes == (
            "cell 1 called Tensor.backward at line 3: `torch.ones(1).backward()`, which the grader does not allow; "
            "the cells after it still ran",
        )
        assert failure(worker, "grad_W1").reason == "forbidden"


def test_a_cell_note_names_a_line_of_an_earlier_cell_with_its_cell(tmp_path: Path) -> None:
    worker = _notebook_worker(tmp_path, "import torch\ndef train():\n    torch.ones(1).backward()", "X = 1\ntrain()")
    with worker:
        worker.start()
        assert worker.cell_notes == (
            "cell 2 called Tensor.backward at cell 1, line 3: `torch.ones(1).backward()`, which the grader does not "
            "allow; the cells after it still ran",
        )
