"""Pruning tests run with one torch thread: the machine is shared and has 2 cores."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tests run beside other jobs on 2 cores: one intra-op thread is much faster there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)
