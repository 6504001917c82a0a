"""make_loaders: shapes, determinism given the seed, and bad arguments."""
import pytest
import torch

from leannet.data import get_source
from leannet.data.loaders import make_loaders
from leannet.errors import LeannetError


def first_labels(seed: int) -> list[int]:
    train, _ = make_loaders(get_source("digits"), 32, seed=seed)
    return next(iter(train))[1].tolist()


def test_loaders_are_deterministic_given_the_seed():
    assert first_labels(0) == first_labels(0)
    assert first_labels(0) != first_labels(1)
    train, val = make_loaders(get_source("digits"), 32)
    x, y = next(iter(train))
    assert x.shape == (32, 1, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert sum(len(b[1]) for b in val) == 360  # validation is never dropped or shuffled
    assert torch.equal(next(iter(val))[1], get_source("digits").val.labels[:64])


def test_bad_loader_arguments():
    with pytest.raises(LeannetError, match="batch size"):
        make_loaders(get_source("digits"), 0)
