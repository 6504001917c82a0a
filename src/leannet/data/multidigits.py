"""MultiMNIST (Sener & Koltun 2018): two digits overlapping on one image, tasks `left` and `right`.

The recipe of their loader: a 36x36 canvas, the left digit at rows and columns 0-28, a randomly
chosen partner at rows and columns 6-34, the overlap [6:28, 6:28] taking the pixelwise max, then a
nearest-neighbour resize to 28x28. Built from scikit-learn's bundled `digits` (`multi-digits`,
upsampled to 28x28 first; for tests and the demo) or from MNIST IDX files (`multi-mnist`).
Deterministic given `seed`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from leannet.data.multilabel import multitask_tensor_source
from leannet.data.registry import DataSource, register_source
from leannet.data.splits import (DEFAULT_VAL_FRACTION, SPLIT_SEED, carved_note, check_fraction,
                                 stratified_indices)
from leannet.errors import LeannetError
from leannet.data.idx import find_idx_folder, standard_places
from leannet.data.idx import SPLIT_FILES, locate, need_file, read_idx

CANVAS, DIGIT, SHIFT, OUT = 36, 28, 6, 28
TASKS = {"left": 10, "right": 10}
# PIL's NEAREST resize samples source pixel floor((i + 0.5) * 36 / 28) for output pixel i.
RESIZE_INDEX = ((np.arange(OUT) + 0.5) * CANVAS / OUT).astype(np.int64)


def overlay(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Compose uint8 28x28 digits (N, 28, 28) into (N, 28, 28) MultiMNIST images."""
    n = len(left)
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    canvas[:, :DIGIT, :DIGIT] = left
    canvas[:, SHIFT:SHIFT + DIGIT, SHIFT:SHIFT + DIGIT] = right
    canvas[:, SHIFT:DIGIT, SHIFT:DIGIT] = np.maximum(left[:, SHIFT:, SHIFT:],
                                                     right[:, :DIGIT - SHIFT, :DIGIT - SHIFT])
    return canvas[:, RESIZE_INDEX][:, :, RESIZE_INDEX]


def make_pairs(images: np.ndarray, labels: np.ndarray, seed: int, size: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair image i (left) with a random partner (right), as Sener & Koltun do; optional subset.

    Returns (images (N, 28, 28) uint8, left labels, right labels).
    """
    rng = np.random.default_rng(seed)
    n = len(images)
    left = np.arange(n) if size is None or size >= n else np.sort(rng.choice(n, size, replace=False))
    right = rng.integers(0, n, size=len(left))
    return overlay(images[left], images[right]), labels[left], labels[right]


def multitask_source(name: str, train: tuple, val: tuple, test: tuple | None = None,
                     splits: dict[str, str] | None = None) -> DataSource:
    """Wrap (images (N, 28, 28), left, right) triples as a multi-task DataSource."""
    def tensors(images: np.ndarray, left: np.ndarray, right: np.ndarray) -> tuple:
        labels = {"left": torch.from_numpy(left.astype(np.int64)),
                  "right": torch.from_numpy(right.astype(np.int64))}
        return torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1), labels

    return multitask_tensor_source(name, tensors(*train), tensors(*val), dict(TASKS),
                                   test=tensors(*test) if test is not None else None,
                                   splits=splits)


@register_source("multi-digits", "MultiMNIST recipe on scikit-learn's bundled digits (tasks left, "
                 "right; 28x28)")
def multi_digits(root: Path | None = None, arg: str | None = None, seed: int = 0,
                 val_fraction: float = DEFAULT_VAL_FRACTION, split_seed: int = SPLIT_SEED,
                 **_: object) -> DataSource:
    """Digits upsampled to 28x28, split 80/20 (stratified; the 20% is the test set), validation
    carved from the 80%, then paired within each split (partners never cross splits)."""
    check_fraction(val_fraction)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    small = torch.from_numpy(bunch.images).float().unsqueeze(1) / 16
    big = torch.nn.functional.interpolate(small, size=(DIGIT, DIGIT), mode="bilinear",
                                          align_corners=False)
    images = (big.squeeze(1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    train_idx, test_idx = train_test_split(np.arange(len(images)), test_size=0.2, random_state=0,
                                           stratify=bunch.target)
    kept, carved = stratified_indices(torch.from_numpy(bunch.target[train_idx]), val_fraction,
                                      split_seed)
    train_idx, val_idx = train_idx[kept.numpy()], train_idx[carved.numpy()]
    train = make_pairs(images[train_idx], bunch.target[train_idx], seed)
    val = make_pairs(images[val_idx], bunch.target[val_idx], seed + 2)
    test = make_pairs(images[test_idx], bunch.target[test_idx], seed + 1)
    notes = {"train": f"pairs of 80% of the digits less validation ({len(train_idx):,})",
             "val": "pairs of " + carved_note(val_fraction, split_seed),
             "test": "pairs of a fixed stratified 20% of the digits (360, seed 0)"}
    return multitask_source("multi-digits", train, val, test, notes)


def _available(root: Path | None) -> bool:
    """Whether the MNIST IDX files are at `root` (or a standard place), without downloading."""

    bases = [Path(root)] if root is not None else standard_places("mnist")
    return any(b.is_dir() and find_idx_folder("mnist", b) is not None for b in bases)


@register_source("multi-mnist", "MultiMNIST (Sener & Koltun 2018) built from the MNIST IDX files "
                 "(tasks left, right; 28x28)", available=_available)
def multi_mnist(root: Path | None = None, arg: str | None = None, seed: int = 0,
                train_size: int | None = None, val_size: int | None = None,
                test_size: int | None = None, download: bool = True,
                val_fraction: float = DEFAULT_VAL_FRACTION, split_seed: int = SPLIT_SEED,
                **_: object) -> DataSource:
    """Pairs from MNIST's training images less validation, validation carved from them
    (`val_fraction`, stratified), and the 10,000 test images; optional random subsets of
    `train_size` / `val_size` / `test_size` pairs.

    MNIST is found as the `mnist` source finds it: in `root`, a standard place, or downloaded.
    """
    check_fraction(val_fraction)

    folder = locate("mnist", Path(root) if root is not None else None, download)
    splits = {}
    for split, (images_stem, labels_stem) in SPLIT_FILES.items():
        images = read_idx(need_file(folder, images_stem), 3).numpy()
        labels = read_idx(need_file(folder, labels_stem), 1).numpy()
        if images.shape[1:] != (DIGIT, DIGIT) or len(images) != len(labels):
            raise LeannetError(f"MNIST files in {folder} have unexpected shapes {images.shape}")
        if split == "test":
            splits["test"] = make_pairs(images, labels, seed + 1, test_size)
            continue
        kept_t, carved_t = stratified_indices(torch.from_numpy(labels), val_fraction, split_seed)
        kept, carved = kept_t.numpy(), carved_t.numpy()
        splits["train"] = make_pairs(images[kept], labels[kept], seed, train_size)
        splits["val"] = make_pairs(images[carved], labels[carved], seed + 2, val_size)
    notes = {"train": "pairs of MNIST's training images less validation",
             "val": "pairs of " + carved_note(val_fraction, split_seed),
             "test": "pairs of MNIST's 10,000 test images"}
    return multitask_source("multi-mnist", splits["train"], splits["val"], splits["test"], notes)
