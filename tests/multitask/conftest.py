"""Multi-task tests train tiny models: one thread is fastest and immune to a busy machine."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Run each test on one torch thread (fit keeps a user-pinned OMP_NUM_THREADS)."""
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
