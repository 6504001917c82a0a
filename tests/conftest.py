"""Test-wide settings: one torch thread, for speed and stable timings on a small shared machine.

Tiny test models gain nothing from intra-op threads, and on a 2-core box that runs other jobs
the thread hand-offs cost far more than the arithmetic. OMP_NUM_THREADS is set too, so
`leannet.train.fit` (which otherwise uses every core) keeps to one thread as well.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
# rich wraps at 80 columns when not on a terminal; tests match whole lines, and the temporary
# paths of parallel workers (pytest-xdist) are long enough to wrap
os.environ["COLUMNS"] = "250"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # module-scoped fixtures run before the per-test fixture below


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """Every test starts on one thread, whatever an earlier test set."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="module")
def _seeded_module():
    """Every test module starts from the same global RNG state, whatever ran before it in the
    same worker: a model a module-scoped fixture builds (its initial weights drawn before any
    `fit(seed=...)`) is then the same model in every run. Unseeded, the trained model behind the
    prune CLI tests depended on which files xdist had run first, and a guard test failed in CI."""
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _seeded_test():
    """And every test starts seeded too, so selecting a subset (-k) does not change its numbers."""
    torch.manual_seed(0)
