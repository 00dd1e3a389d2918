"""Shared by the evaluation tests: torch runs one thread (the tests are small; the machine has 2 cores)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
