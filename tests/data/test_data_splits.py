"""Honest splits: validation carved from training (seeded, stratified, sized), test untouched,
bad fractions refused in one line, and every built-in source says where each split came from."""
import pytest
import torch

from leannet.data import get_source
from leannet.data.splits import random_indices, stratified_indices
from leannet.errors import LeannetError


def test_stratified_carve_is_seeded_disjoint_and_sized():
    labels = torch.arange(100) % 4  # 25 per class
    kept, carved = stratified_indices(labels, 0.2, seed=0)
    assert len(carved) == 20 and torch.bincount(labels[carved]).tolist() == [5] * 4
    assert sorted(torch.cat([kept, carved]).tolist()) == list(range(100))
    again, _ = stratified_indices(labels, 0.2, seed=0)
    other, _ = stratified_indices(labels, 0.2, seed=1)
    assert torch.equal(kept, again) and not torch.equal(kept, other)
    single = torch.tensor([0, 0, 0, 1])  # a class of one image stays in training
    kept, carved = stratified_indices(single, 0.5)
    assert 3 in kept.tolist() and len(carved) == 2
    kept, carved = random_indices(10, 0.3, seed=0)
    assert len(carved) == 3 and sorted(torch.cat([kept, carved]).tolist()) == list(range(10))


@pytest.mark.parametrize("bad", [0, 1, -0.1, float("nan"), float("inf")])
def test_bad_val_fraction_is_one_line(bad):
    with pytest.raises(LeannetError, match="--val-fraction must be") as err:
        get_source("digits", val_fraction=bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name,options", [
    ("digits", {}), ("multi-digits", {}),
    ("digits-detect", {"image_size": 32, "num_train": 4, "num_val": 3, "num_test": 2}),
])
def test_every_bundled_source_has_three_described_splits(name, options):
    source = get_source(name, **options)
    assert set(source.splits) == {"train", "val", "test"}
    assert len(source.split("val")) > 0 and len(source.split("test")) > 0
    if name == "digits-detect":
        assert (len(source.train), len(source.val), len(source.test)) == (4, 3, 2)
        train_ids = {id(c) for c in source.train.crops}
        assert not train_ids & {id(c) for c in source.val.crops}  # validation digits held out
        return
    train = {bytes(x.numpy()) for x in source.train.images}
    for held in (source.val, source.test):  # no image of train reappears in val or test
        assert not train & {bytes(x.numpy()) for x in held.images}
