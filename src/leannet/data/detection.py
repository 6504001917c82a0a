"""Detection sources: `digits-detect` (real digits pasted on canvases) and `yolo:PATH` folders.

`digits-detect` places 1-4 real handwritten digits (scikit-learn's bundled set, or MNIST when a
root holding it is given) at random positions and sizes; each canvas is a pure function of
(seed, index), and boxes are the exact pasted rectangles of the digits' tight crops. Samples are
(float image in [0, 1], {"boxes": xyxy pixels, "labels": int64}); batch with `detection_collate`.
"""
from __future__ import annotations

import gzip
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from leannet.data.registry import DataSource, register_source
from leannet.data.splits import (DEFAULT_VAL_FRACTION, SPLIT_SEED, carved_note, check_fraction,
                                 random_indices, stratified_indices)
from leannet.data.box_augment import box_augment, detection_collate, to_input
from leannet.data.images import read_image
from leannet.data.yolo_format import (find_data_yaml, label_path, list_images, parse_labels,
                                        read_data_yaml, to_pixel_boxes)
from leannet.errors import LeannetError

__all__ = ["DigitCanvases", "YoloFolder", "detection_collate"]

Augment = Callable[[Tensor, dict], tuple[Tensor, dict]] | None
MASK_INK = 85  # uint8 ink from which a pixel belongs to its digit's mask


def _tight_crops(images: np.ndarray) -> list[Tensor]:
    """Each uint8 (H, W) digit cropped to the rows and columns that hold ink."""
    rows, cols = np.asarray(images.any(2)), np.asarray(images.any(1))
    top, left = rows.argmax(1), cols.argmax(1)
    bottom = images.shape[1] - rows[:, ::-1].argmax(1)
    right = images.shape[2] - cols[:, ::-1].argmax(1)
    return [torch.from_numpy(image[t:b, l:r].copy())
            for image, t, b, l, r in zip(images, top, bottom, left, right)]


Pool = tuple[list[Tensor], Tensor]  # digit crops and their labels


def _digit_pools(root: Path | None) -> tuple[Pool, Pool]:
    """Train and val pools: MNIST's own split under root, else sklearn's digits split 80/20."""
    mnist = _find_mnist(root)
    if mnist is not None:
        train, val = ((_tight_crops(_idx(mnist / f"{p}-images-idx3-ubyte.gz")),
                       torch.from_numpy(_idx(mnist / f"{p}-labels-idx1-ubyte.gz")).long())
                      for p in ("train", "t10k"))
        return train, val
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images * 255 / 16).round().astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    cut = int(0.8 * len(images))
    train, val = ((_tight_crops(images[idx]), torch.from_numpy(bunch.target[idx]).long())
                  for idx in (order[:cut], order[cut:]))
    return train, val


def _find_mnist(root: Path | None) -> Path | None:
    """The folder holding MNIST's IDX files: root itself or root/mnist."""
    if root is None:
        return None
    for folder in (root, root / "mnist"):
        if (folder / "train-images-idx3-ubyte.gz").is_file():
            return folder
    warnings.warn(f"no MNIST IDX files under {root}; digits-detect uses scikit-learn's digits",
                  stacklevel=3)
    return None


def _idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format): magic, dims, then uint8 data."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


class DigitCanvases(Dataset):
    """Canvases of several digits; canvas `i` depends only on (seed, i)."""

    def __init__(self, crops: list[Tensor], labels: Tensor, length: int, image_size: int,
                 seed: int, digits: tuple[int, int] = (1, 4),
                 sizes: tuple[float, float] = (0.18, 0.42), augment: Augment = None) -> None:
        self.crops, self.labels, self.length = crops, labels, length
        self.image_size, self.seed, self.digits, self.sizes = image_size, seed, digits, sizes
        self.augment = augment

    def __len__(self) -> int:
        return self.length

    def layout(self, index: int) -> tuple[list[int], Tensor]:
        """Which digits go where: crop indices and their integer xyxy boxes."""
        rng = np.random.default_rng([self.seed, index])
        placed: list[list[int]] = []
        chosen: list[int] = []
        for _ in range(int(rng.integers(self.digits[0], self.digits[1] + 1))):
            pick = int(rng.integers(len(self.crops)))
            ch, cw = self.crops[pick].shape
            side = rng.uniform(*self.sizes) * self.image_size
            h, w = max(4, round(side * ch / max(ch, cw))), max(4, round(side * cw / max(ch, cw)))
            for _ in range(30):  # rejection sampling: digits never overlap
                x = int(rng.integers(0, self.image_size - w + 1))
                y = int(rng.integers(0, self.image_size - h + 1))
                box = [x, y, x + w, y + h]
                if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1]
                       for b in placed):
                    placed.append(box)
                    chosen.append(pick)
                    break
        return chosen, torch.tensor(placed, dtype=torch.float32).reshape(-1, 4)

    def render(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        """The uint8 (1, H, W) canvas and its exact boxes and labels."""
        chosen, boxes = self.layout(index)
        canvas = torch.zeros(1, self.image_size, self.image_size)
        for pick, (x1, y1, x2, y2) in zip(chosen, boxes.long().tolist()):
            digit = self.crops[pick][None, None].float()
            canvas[0, y1:y2, x1:x2] = F.interpolate(digit, size=(y2 - y1, x2 - x1),
                                                    mode="bilinear", align_corners=False)[0, 0]
        labels = self.labels[chosen] if chosen else torch.zeros(0, dtype=torch.long)
        return canvas.round().clamp(0, 255).to(torch.uint8), {"boxes": boxes, "labels": labels}

    def mask(self, index: int) -> Tensor:
        """The (H, W) int64 semantic mask of canvas `index`: 0 background, digit d is d + 1
        where its ink is at least MASK_INK (a third of full intensity)."""
        chosen, boxes = self.layout(index)
        mask = torch.zeros(self.image_size, self.image_size, dtype=torch.long)
        for pick, (x1, y1, x2, y2) in zip(chosen, boxes.long().tolist()):
            digit = self.crops[pick][None, None].float()
            ink = F.interpolate(digit, size=(y2 - y1, x2 - x1), mode="bilinear",
                                align_corners=False)[0, 0]
            region = mask[y1:y2, x1:x2]
            region[ink.round() >= MASK_INK] = int(self.labels[pick]) + 1
        return mask

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        image, target = self.render(index)
        if self.augment:  # None or False (loaders.plain switches it off)
            image, target = self.augment(image, target)
        return to_input(image), target

    def box_sizes(self) -> Tensor:
        """(M, 2) widths and heights of every box before augmentation (for k-means anchors)."""
        boxes = torch.cat([self.layout(i)[1] for i in range(self.length)])
        return boxes[:, 2:] - boxes[:, :2]


@register_source("digits-detect", "canvases of 1-4 real digits at random places and sizes "
                 "(sklearn digits; MNIST with --root), exact boxes, 10 classes + a count task")
def digits_detect(root: Path | None = None, arg: str | None = None, image_size: int | None = None,
                  augment: bool = True, seed: int = 0, num_train: int = 4000, num_val: int = 500,
                  num_test: int | None = None, max_digits: int = 4,
                  val_fraction: float = DEFAULT_VAL_FRACTION, split_seed: int = SPLIT_SEED,
                  **_: object) -> DataSource:
    """digits-detect at `image_size` px (default 96, a multiple of 32), 1-channel.

    Test canvases use the held-out digits (MNIST's t10k, or sklearn's 20%); validation canvases
    use a carved `val_fraction` of the training digits, which training canvases never show.
    `num_test` defaults to `num_val`.
    """
    size = int(image_size or 96)
    if size < 32 or size % 32:
        raise LeannetError(f"digits-detect image_size must be a multiple of 32, got {size}")
    if max_digits < 1:
        raise LeannetError(f"max_digits must be at least 1, got {max_digits}")
    check_fraction(val_fraction)
    (pool_crops, pool_labels), (test_crops, test_labels) = _digit_pools(root)
    kept, carved = stratified_indices(pool_labels, val_fraction, split_seed)
    train_crops, val_crops = [pool_crops[i] for i in kept], [pool_crops[i] for i in carved]
    train_labels, val_labels = pool_labels[kept], pool_labels[carved]
    jitter = box_augment(flip=False, scale=(0.85, 1.15), translate=0.08, colour=False)
    digits = (1, max_digits)
    train = DigitCanvases(train_crops, train_labels, num_train, size, seed, digits,
                          augment=jitter if augment else None)
    val = DigitCanvases(val_crops, val_labels, num_val, size, seed + 2_000_003, digits)
    test = DigitCanvases(test_crops, test_labels, num_val if num_test is None else num_test,
                         size, seed + 1_000_003, digits)
    notes = {"train": "canvases of the training digits less validation",
             "val": "canvases of " + carved_note(val_fraction, split_seed, "training digit"),
             "test": "canvases of the held-out digits (MNIST t10k, or sklearn's fixed 20%)"}
    return DataSource("digits-detect", train, val, num_classes=10, in_channels=1,
                      image_size=size, task="detect", class_names=[str(d) for d in range(10)],
                      extra={"count_classes": max_digits + 1, "collate_fn": detection_collate},
                      test=test, splits=notes)


class YoloFolder(Dataset):
    """One split of a YOLO-layout dataset, resized to square `image_size`; labels read eagerly."""

    def __init__(self, folder: Path, names: list[str], image_size: int, augment: Augment = None,
                 pick: list[int] | None = None) -> None:
        self.images = list_images(folder)
        if not self.images:
            raise LeannetError(f"no images (.jpg, .png, .bmp) in {folder}")
        if pick is not None:  # a carved part of the folder (validation taken from train)
            self.images = [self.images[i] for i in pick]
        self.rows = [parse_labels(label_path(p), len(names)) for p in self.images]
        self.image_size, self.augment = image_size, augment
        self._cache: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.images)

    def _image(self, index: int) -> Tensor:
        """The image as uint8 RGB at the square input size (decoded once, then kept)."""
        if index not in self._cache:
            image = read_image(self.images[index])
            self._cache[index] = (to_input(image, self.image_size) * 255).round().to(torch.uint8)
        return self._cache[index]

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        boxes, labels = to_pixel_boxes(self.rows[index], self.image_size)
        image, target = self._image(index), {"boxes": boxes, "labels": labels}
        if self.augment:  # None or False (loaders.plain switches it off)
            image, target = self.augment(image, target)
        return to_input(image), target

    def box_sizes(self) -> Tensor:
        """(M, 2) box sizes in pixels of the square input (for k-means anchors)."""
        rows = torch.cat(self.rows) if self.rows else torch.zeros(0, 5)
        return rows[:, 3:5] * self.image_size


@register_source("yolo:", "a YOLO-layout dataset: yolo:PATH to a folder with data.yaml "
                 "(images/, labels/ with 'class cx cy w h') or to the yaml itself")
def yolo_folder(root: Path | None = None, arg: str | None = None, image_size: int | None = None,
                augment: bool = True, val_fraction: float = DEFAULT_VAL_FRACTION,
                split_seed: int = SPLIT_SEED, **_: object) -> DataSource:
    """The splits of the data.yaml at PATH, as 3-channel squares (default 224 px).

    `val:` and `test:` are used as given. A lone held-out folder (`val:` without `test:`) is the
    test set and validation is carved from `train:` (`val_fraction`, seeded); with neither, both
    are carved (20% test, fixed seed 0).
    """
    if not arg:
        raise LeannetError("yolo: needs a path, e.g. yolo:data/coco128")
    check_fraction(val_fraction)
    path = Path(arg) if Path(arg).is_absolute() or root is None else root / arg
    data_yaml = find_data_yaml(Path(arg) if Path(arg).exists() else path)
    config = read_data_yaml(data_yaml)
    size = int(image_size or 224)
    if size < 32 or size % 32:
        raise LeannetError(f"image_size must be a multiple of 32 for YOLO heads, got {size}")
    names, train_dir = config["names"], config["train"]
    val_dir, test_dir = config["val"], config["test"]
    if val_dir is not None and val_dir.resolve() == train_dir.resolve():
        val_dir = None  # a val: that repeats train: holds nothing out
    if test_dir is None:
        val_dir, test_dir = None, val_dir
    notes = {"train": f"{train_dir.name}/"}
    count = len(list_images(train_dir))
    pick = list(range(count))
    if test_dir is None:
        kept, carved = random_indices(count, 0.2, 0)
        pick = kept.tolist()
        test = YoloFolder(train_dir, names, size, pick=carved.tolist())
        notes["test"] = "a random 0.2 of the train: images (seed 0)"
    else:
        test = YoloFolder(test_dir, names, size)
        notes["test"] = f"{test_dir.name}/ ({'test:' if config['test'] else 'val:'} in data.yaml)"
    if val_dir is None:
        kept, carved = random_indices(len(pick), val_fraction, split_seed)
        val = YoloFolder(train_dir, names, size, pick=[pick[i] for i in carved.tolist()])
        pick = [pick[i] for i in kept.tolist()]
        notes["val"] = f"a random {val_fraction:g} of the train: images (split seed {split_seed})"
    else:
        val = YoloFolder(val_dir, names, size)
        notes["val"] = f"{val_dir.name}/ (val: in data.yaml)"
    if len(pick) < count:
        notes["train"] += f" less the carved images ({len(pick):,} left)"
    train = YoloFolder(train_dir, names, size, box_augment() if augment else None, pick=pick)
    return DataSource(f"yolo:{arg}", train, val, num_classes=len(names), in_channels=3,
                      image_size=size, task="detect", class_names=names,
                      extra={"collate_fn": detection_collate, "data_yaml": data_yaml},
                      test=test, splits=notes)  # data_yaml: its task spec (labels_csv)
