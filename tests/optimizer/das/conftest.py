"""Fixtures of the DAS tests."""
from __future__ import annotations

import pytest
import torch
from das_cases import three_mode_prior


@pytest.fixture
def gm(device, dtype):
    return three_mode_prior(device, dtype)


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """Small tensors on a shared CPU: intra-op thread wake-ups cost more than the work
    (measured 10x slower with 2 threads under contention); restore the setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
