"""gradcheckers.scratch: per-thread memory kept between calls, and the finite differences that use it."""

from __future__ import annotations

import threading

import torch
from gradcheckers.models.two_layer import draw, finite_differences

from gradcheckers.assignment import Sizes
from gradcheckers.scratch import _KEEP_AT_MOST, scratch


def test_the_tensors_have_the_asked_shapes_side_by_side_and_do_not_overlap():
    a, b = scratch((3, 4), (2, 5, 1))
    assert a.shape == (3, 4) and b.shape == (2, 5, 1) and a.dtype == b.dtype == torch.float64
    a.fill_(1.0)
    b.fill_(2.0)
    assert bool((a == 1).all()) and bool((b == 2).all())


def test_a_second_call_reuses_the_first_calls_memory_and_a_larger_one_grows_it():
    first = scratch((1000,))[0].data_ptr()
    assert scratch((10, 100))[0].data_ptr() == first
    grown = scratch((10**6,))[0]
    assert grown.numel() == 10**6
    assert scratch((1000,))[0].data_ptr() == grown.data_ptr()


def test_a_request_beyond_the_cap_is_served_fresh_and_not_kept():
    kept = scratch((1000,))[0].data_ptr()
    big = scratch((_KEEP_AT_MOST + 1,))[0]
    assert big.numel() == _KEEP_AT_MOST + 1 and big.data_ptr() != kept
    assert scratch((1000,))[0].data_ptr() == kept  # the kept block was not replaced by the big one


def test_each_thread_and_each_dtype_has_a_block_of_its_own():
    here = scratch((100,))[0].data_ptr()
    assert scratch((100,), dtype=torch.float32)[0].data_ptr() != here
    there = []
    thread = threading.Thread(target=lambda: there.append(scratch((100,))[0].data_ptr()))
    thread.start()
    thread.join()
    assert there[0] != here


Differences = dict[str, tuple[torch.Tensor, torch.Tensor]]


def _case(hidden: int) -> dict[str, torch.Tensor]:
    return draw(Sizes(32, 8, hidden, 4), torch.Generator().manual_seed(hidden))


def _fd(args: dict[str, torch.Tensor]) -> Differences:
    return finite_differences(args["X"], args["Y"], args)


def _identical(a: Differences, b: Differences) -> bool:
    return all(torch.equal(a[k][i], b[k][i]) for k in a for i in (0, 1))


def test_structure_aware_differences_are_the_same_after_other_sizes_used_the_kept_memory():
    big, small = _case(300), _case(7)
    before = _fd(big)
    _fd(small)  # writes the kept buffers with another layout
    assert _identical(_fd(big), before)


def test_two_threads_computing_differences_at_once_get_what_each_gets_alone():
    cases = [_case(300), _case(299)]
    alone = [_fd(c) for c in cases]
    together: list[list[Differences]] = [[], []]
    start = threading.Barrier(2)

    def work(i: int) -> None:
        start.wait()
        for _ in range(5):
            together[i].append(_fd(cases[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert all(_identical(got, alone[i]) for got in together[i])
