"""make_loaders: shapes, determinism given the seed, and bad arguments."""
import pytest
import torch

from leannet.data import get_source
from leannet.data.loaders import calibration_loader, make_loaders, split_loader
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
    assert sum(len(b[1]) for b in val) == 142  # validation is never dropped or shuffled
    assert torch.equal(next(iter(val))[1], get_source("digits").val.labels[:64])
    test = split_loader(get_source("digits"), "test", 100)
    assert [len(b[1]) for b in test] == [100, 100, 100, 60]
    assert torch.equal(torch.cat([b[1] for b in test]), get_source("digits").test.labels)


def test_bad_loader_arguments():
    with pytest.raises(LeannetError, match="batch size"):
        make_loaders(get_source("digits"), 0)
    with pytest.raises(LeannetError, match="unknown split 'dev'"):
        split_loader(get_source("digits"), "dev", 8)
    with pytest.raises(LeannetError, match="calibration split must be train or val"):
        calibration_loader(get_source("digits"), 8, 0, 1, split="test")


def test_calibration_reads_validation_without_augmentation():
    source = get_source("digits")
    loader = calibration_loader(source, 32, seed=0, max_batches=2, split="val")
    labels = torch.cat([b[1] for b in loader])
    assert len(labels) == 64
    val_images = {bytes(x.numpy()) for x, _ in (source.val[i] for i in range(len(source.val)))}
    assert all(bytes(x.numpy()) in val_images for b in loader for x in b[0])
