"""Fixtures of the DAS tests."""
from __future__ import annotations

import pytest
from das_cases import three_mode_prior


@pytest.fixture
def gm(device, dtype):
    return three_mode_prior(device, dtype)
