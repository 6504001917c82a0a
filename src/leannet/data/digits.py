"""`digits`: scikit-learn's bundled 1,797 real handwritten 8x8 digits, resized for the CNNs.

No download: this is the source the demo and the tests use. 20% (360 images) is held out as the
test set with a fixed seed, so it is the same on every machine; validation is carved from the rest
(`val_fraction`, stratified, `split_seed`).
"""
from __future__ import annotations

from pathlib import Path

import torch

from leannet.data.registry import DataSource, register_source
from leannet.data.splits import DEFAULT_VAL_FRACTION, SPLIT_SEED, carve, carved_note, check_fraction
from leannet.data.tensors import classification_source

DEFAULT_IMAGE_SIZE = 16


@register_source("digits", "scikit-learn's 1,797 real 8x8 handwritten digits (bundled, 10 classes)")
def digits(root: Path | None = None, arg: str | None = None, image_size: int | None = None,
           augment: bool = True, val_fraction: float = DEFAULT_VAL_FRACTION,
           split_seed: int = SPLIT_SEED, **_: object) -> DataSource:
    """The digits set as 1-channel uint8 images of `image_size` px (default 16).

    Test: the fixed stratified 20% (360 images); validation: `val_fraction` of the other 1,437.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    check_fraction(val_fraction)
    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().mul(255 / 16).round().to(torch.uint8)
    images = images.unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.from_numpy(bunch.target).long()
    index = torch.arange(len(labels)).numpy()
    train_idx, test_idx = train_test_split(index, test_size=0.2, random_state=0,
                                           stratify=bunch.target)
    size = int(image_size or DEFAULT_IMAGE_SIZE)
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    train, val = carve((images[train_idx], labels[train_idx]), val_fraction, split_seed)
    notes = {"train": f"80% of the 1,797 digits less validation ({len(train[1]):,} images)",
             "val": carved_note(val_fraction, split_seed),
             "test": "a fixed stratified 20% of the 1,797 digits (360 images, seed 0)"}
    return classification_source(
        "digits", train, val, [str(d) for d in range(10)], image_size=size,
        padding=max(1, size // 8), flip=False, augment=augment,
        test=(images[test_idx], labels[test_idx]), splits=notes)
