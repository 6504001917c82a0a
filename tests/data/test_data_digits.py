"""The bundled digits source: fixed stratified test split, carved validation, sizes,
normalisation, no flips."""
import torch

from leannet.data import get_source
from leannet.data.transforms import RandomCropFlip


def test_digits_split_is_fixed_stratified_and_normalised():
    source = get_source("digits")
    assert (len(source.train), len(source.val), len(source.test)) == (1295, 142, 360)
    assert (source.num_classes, source.in_channels, source.image_size) == (10, 1, 16)
    test_counts = torch.bincount(source.test.labels, minlength=10)
    assert test_counts.min() >= 35 and test_counts.max() <= 37  # 20% of ~180 per class
    val_counts = torch.bincount(source.val.labels, minlength=10)
    assert val_counts.min() >= 13 and val_counts.max() <= 15  # 10% of the other ~144 per class
    again = get_source("digits")
    assert torch.equal(source.test.images, again.test.images)
    assert torch.equal(source.val.images, again.val.images)
    other = get_source("digits", val_fraction=0.2, split_seed=1)
    assert len(other.val) == 287 and torch.equal(other.test.images, source.test.images)
    assert source.train.images.dtype == torch.uint8  # kept compact in memory
    x = torch.stack([source.test[i][0] for i in range(len(source.test))])
    assert abs(x.mean().item()) < 0.1 and 0.8 < x.std().item() < 1.2


def test_digits_image_size_override_and_augmentation():
    small = get_source("digits", image_size=8)
    assert small.image_size == 8 and small.train[0][0].shape == (1, 8, 8)
    big = get_source("digits", image_size=24)
    assert big.val[0][0].shape == (1, 24, 24)
    transform = big.train.transform
    assert isinstance(transform, RandomCropFlip) and not transform.flip  # no mirrored digits
    assert big.val.transform is None


def test_random_crop_shifts_and_flip_mirrors():
    image = torch.arange(16, dtype=torch.uint8).view(1, 4, 4)
    torch.manual_seed(0)
    crops = [RandomCropFlip(padding=1)(image) for _ in range(30)]
    assert all(c.shape == image.shape for c in crops)
    assert any(not torch.equal(c, image) for c in crops)  # shifted at least once
    shifted = next(c for c in crops if not torch.equal(c, image))
    assert (shifted == 0).any()  # zero padding came in
    flips = [RandomCropFlip(padding=0, flip=True)(image) for _ in range(30)]
    assert any(torch.equal(f, image.flip(-1)) for f in flips)
    assert any(torch.equal(f, image) for f in flips)
