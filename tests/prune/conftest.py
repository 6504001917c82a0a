"""Pruning tests start from a fixed random state (one torch thread: tests/conftest.py)."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def seeded():
    """Every pruning test starts from the same random state (one thread: tests/conftest.py)."""
    torch.manual_seed(0)
