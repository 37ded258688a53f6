"""One intra-op thread for small work, torch's own setting otherwise, and the previous setting restored."""

from __future__ import annotations

import pytest
import torch

from gradcheckers._threads import SMALL, one_thread_if_small


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_small_tensors_run_on_one_thread_and_the_setting_is_restored(two_threads: None) -> None:
    with one_thread_if_small([torch.zeros(SMALL), 3, "not a tensor"]):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_a_large_tensor_keeps_torchs_setting(two_threads: None) -> None:
    with one_thread_if_small([torch.zeros(3), torch.zeros(SMALL + 1)]):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 2


def test_the_setting_is_restored_when_the_block_raises(two_threads: None) -> None:
    with pytest.raises(ValueError), one_thread_if_small([torch.zeros(4)]):
        raise ValueError
    assert torch.get_num_threads() == 2
