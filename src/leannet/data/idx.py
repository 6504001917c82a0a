"""`mnist` and `fashion-mnist` from the original IDX files (gzipped or not).

Looked for in `--data-root`, else in standard places (Debian's `/usr/share/datasets/<name>`,
leannet's cache), else downloaded with torchvision when online; one error names all three.
IDX files are raw uint8 already, so they are parsed straight into tensors without a cache.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from leannet.data.cache import cache_dir
from leannet.data.registry import DataSource, register_source
from leannet.data.splits import (DEFAULT_VAL_FRACTION, SPLIT_SEED, carve, carved_note,
                                 check_fraction)
from leannet.data.tensors import classification_source
from leannet.errors import LeannetError

SPLIT_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
TORCHVISION_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


def standard_places(name: str) -> list[Path]:
    """Folders searched when no root is given: Debian's dataset packages, then leannet's cache."""
    return [Path("/usr/share/datasets") / name, cache_dir() / "datasets" / name]


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """Parse one IDX file of uint8 data with `ndim` dimensions; bad magic or truncation is an error."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise LeannetError(f"cannot read IDX file {path}: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != ndim:
        raise LeannetError(f"IDX file {path} has a bad magic number {raw[:4].hex() or 'none'}; "
                           f"expected 000008{ndim:02x} (uint8, {ndim}-d)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise LeannetError(f"IDX file {path} is truncated (header of {len(raw)} bytes)")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise LeannetError(f"IDX file {path} is truncated or padded: {len(raw)} bytes, "
                           f"expected {expected} for shape {tuple(dims)}")
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(array.copy())


def need_file(folder: Path, stem: str) -> Path:
    """`_find_file`, or a one-line error naming the file that is missing."""
    found = _find_file(folder, stem)
    if found is None:
        raise LeannetError(f"{folder} has no {stem} (or {stem}.gz)")
    return found


def _find_file(folder: Path, stem: str) -> Path | None:
    """`stem` or `stem.gz` in folder, or with torchvision's dotted names (`train-images.idx3-ubyte`)."""
    for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                      stem.replace("-idx", ".idx") + ".gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def find_idx_folder(name: str, base: Path) -> Path | None:
    """The folder under `base` holding all four IDX files (itself, `<name>/`, or torchvision's `raw/`)."""
    tv = TORCHVISION_NAMES[name]
    for folder in (base, base / name, base / "raw", base / tv / "raw", base / name / tv / "raw"):
        if all(_find_file(folder, stem) for pair in SPLIT_FILES.values() for stem in pair):
            return folder
    return None


def _download(name: str) -> Path | None:
    """Let torchvision download the IDX files into leannet's cache; None when offline."""
    if os.environ.get("LEANNET_OFFLINE"):
        return None
    import torchvision.datasets as tvd

    target = cache_dir() / "datasets" / name
    dataset_class = getattr(tvd, TORCHVISION_NAMES[name])
    try:
        for train in (True, False):
            dataset_class(str(target), train=train, download=True)
    except Exception:
        return None
    return find_idx_folder(name, target)


def locate(name: str, root: Path | None, download: bool = True) -> Path:
    """The folder with `name`'s IDX files: from `root`, standard places, or a download."""
    if root is not None:
        if not root.is_dir():
            raise LeannetError(f"data root {root} does not exist or is not a folder")
        folder = find_idx_folder(name, root)
        if folder is None:
            raise LeannetError(f"no {name} IDX files in {root}; expected "
                               f"{SPLIT_FILES['train'][0]}[.gz] and the three others")
        return folder
    for place in standard_places(name):
        folder = find_idx_folder(name, place) if place.is_dir() else None
        if folder is not None:
            return folder
    folder = _download(name) if download else None
    if folder is None:
        places = ", ".join(str(p) for p in standard_places(name))
        raise LeannetError(f"{name} not found: pass --data-root with its IDX files, or install "
                           f"them in a standard place ({places}), or go online for torchvision's "
                           f"download")
    return folder


def _load(name: str, root: Path | None, image_size: int | None, augment: bool,
          download: bool, val_fraction: float, split_seed: int) -> DataSource:
    """Read the four IDX files of `name` into a classify source; validation is carved from the
    training files, the official t10k files are the test set."""
    check_fraction(val_fraction)
    folder = locate(name, root, download)
    splits = {}
    for split, (images_stem, labels_stem) in SPLIT_FILES.items():
        images = read_idx(need_file(folder, images_stem), 3).unsqueeze(1)
        labels = read_idx(need_file(folder, labels_stem), 1).long()
        if len(images) != len(labels):
            raise LeannetError(f"{folder}: {split} has {len(images)} images but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise LeannetError(f"{folder}: {split} labels must be classes 0-9, found "
                               f"{int(labels.max())}")
        splits[split] = (images, labels)
    fashion = name == "fashion-mnist"
    classes = FASHION_CLASSES if fashion else [str(d) for d in range(10)]
    train, val = carve(splits["train"], val_fraction, split_seed)
    notes = {"train": f"the training files less validation ({len(train[1]):,} images)",
             "val": carved_note(val_fraction, split_seed),
             "test": f"the official t10k test files ({len(splits['test'][1]):,} images)"}
    return classification_source(name, train, val, classes, image_size,
                                 padding=2, flip=fashion, augment=augment,
                                 extra={"folder": str(folder)}, test=splits["test"],
                                 splits=notes)


def _available(name: str):
    """An `available(root)` check that never downloads."""
    def check(root: Path | None) -> bool:
        bases = [root] if root is not None else standard_places(name)
        return any(b.is_dir() and find_idx_folder(name, b) is not None for b in bases)
    return check


@register_source("mnist", "MNIST handwritten digits, 60k/10k 28x28 grey (IDX files)",
                 available=_available("mnist"))
def mnist(root: Path | None = None, arg: str | None = None, image_size: int | None = None,
          augment: bool = True, download: bool = True,
          val_fraction: float = DEFAULT_VAL_FRACTION, split_seed: int = SPLIT_SEED,
          **_: object) -> DataSource:
    """MNIST from IDX files; no flips (a mirrored digit is another glyph)."""
    return _load("mnist", root, image_size, augment, download, val_fraction, split_seed)


@register_source("fashion-mnist", "Fashion-MNIST clothing, 60k/10k 28x28 grey (IDX files)",
                 available=_available("fashion-mnist"))
def fashion_mnist(root: Path | None = None, arg: str | None = None, image_size: int | None = None,
                  augment: bool = True, download: bool = True,
                  val_fraction: float = DEFAULT_VAL_FRACTION, split_seed: int = SPLIT_SEED,
                  **_: object) -> DataSource:
    """Fashion-MNIST from IDX files; random crops and horizontal flips."""
    return _load("fashion-mnist", root, image_size, augment, download, val_fraction, split_seed)
