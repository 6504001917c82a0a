"""`cifar10`: an ImageFolder layout (`train/<class>/`, `test/<class>/`) or torchvision's own batches.

torchvision's `cifar-10-batches-py` files are pickles; they are read with an unpickler that only
allows numpy arrays to be rebuilt, so a planted file cannot run code. The binary release
(`cifar-10-batches-bin`) is read as raw bytes.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from leannet.data.cache import cache_dir
from leannet.data.folders import folder_source, split_folders
from leannet.data.registry import DataSource, register_source
from leannet.data.splits import (DEFAULT_VAL_FRACTION, SPLIT_SEED, carve, carved_note,
                                 check_fraction)
from leannet.data.tensors import classification_source
from leannet.errors import LeannetError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
SAFE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that rebuilds dicts, lists, bytes and numpy arrays, and refuses anything else."""

    def find_class(self, module: str, name: str):
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_py_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One `cifar-10-batches-py` file as uint8 images (N, 3, 32, 32) and labels."""
    try:
        batch = _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as err:
        raise LeannetError(f"cannot read CIFAR-10 batch {path}: {err}") from None
    return torch.from_numpy(data.copy()), torch.from_numpy(labels)


def _read_bin_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One `cifar-10-batches-bin` file: records of 1 label byte + 3072 pixel bytes."""
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if raw.size == 0 or raw.size % 3073:
        raise LeannetError(f"CIFAR-10 binary batch {path} is truncated ({raw.size} bytes, "
                           "expected a multiple of 3073)")
    records = raw.reshape(-1, 3073)
    images = torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(records[:, 0].astype(np.int64))


def find_batches(base: Path) -> tuple[Path, str] | None:
    """The folder of torchvision's batches under `base` and its kind ('py' or 'bin')."""
    for folder, kind, test in ((base / "cifar-10-batches-py", "py", "test_batch"),
                               (base, "py", "test_batch"),
                               (base / "cifar-10-batches-bin", "bin", "test_batch.bin"),
                               (base, "bin", "test_batch.bin")):
        suffix = ".bin" if kind == "bin" else ""
        if (folder / test).is_file() and all((folder / (b + suffix)).is_file()
                                              for b in TRAIN_BATCHES):
            return folder, kind
    return None


def _from_batches(folder: Path, kind: str, image_size: int | None, augment: bool,
                  val_fraction: float, split_seed: int) -> DataSource:
    """Build the source from the five training batches (validation carved from them) and the
    test batch."""
    read = _read_py_batch if kind == "py" else _read_bin_batch
    suffix = ".bin" if kind == "bin" else ""
    parts = [read(folder / (b + suffix)) for b in TRAIN_BATCHES]
    train = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    test = read(folder / ("test_batch" + suffix))
    train, val = carve(train, val_fraction, split_seed)
    notes = {"train": f"the five training batches less validation ({len(train[1]):,} images)",
             "val": carved_note(val_fraction, split_seed),
             "test": f"the official test batch ({len(test[1]):,} images)"}
    return classification_source("cifar10", train, val, CLASSES, image_size, padding=4,
                                 flip=True, augment=augment, extra={"root": str(folder)},
                                 test=test, splits=notes)


def standard_places() -> list[Path]:
    """Folders searched when no root is given."""
    return [Path("/usr/share/datasets/cifar10"), cache_dir() / "datasets" / "cifar10"]


def _usable(base: Path) -> bool:
    return base.is_dir() and (split_folders(base) is not None or find_batches(base) is not None)


def _from_base(base: Path, image_size: int | None, augment: bool, val_fraction: float,
               split_seed: int) -> DataSource:
    if split_folders(base) is not None:
        return folder_source("cifar10", base, image_size, augment, flip=True, padding=4,
                             val_fraction=val_fraction, split_seed=split_seed)
    folder, kind = find_batches(base)  # type: ignore[misc]
    return _from_batches(folder, kind, image_size, augment, val_fraction, split_seed)


@register_source("cifar10", "CIFAR-10, 50k/10k 32x32 RGB (train/ + test/ class folders, or "
                 "torchvision's batches)",
                 available=lambda root: any(_usable(b) for b in (
                     [root, root / "cifar10"] if root else standard_places())))
def cifar10(root: Path | None = None, arg: str | None = None, image_size: int | None = None,
            augment: bool = True, download: bool = True,
            val_fraction: float = DEFAULT_VAL_FRACTION, split_seed: int = SPLIT_SEED,
            **_: object) -> DataSource:
    """CIFAR-10 from `root`, a standard place, or torchvision's download; crops and flips."""
    check_fraction(val_fraction)
    if root is not None:
        if not root.is_dir():
            raise LeannetError(f"data root {root} does not exist or is not a folder")
        base = next((b for b in (root, root / "cifar10") if _usable(b)), None)
        if base is None:
            raise LeannetError(f"{root} holds neither train/ and test/ class folders nor "
                               "torchvision's cifar-10-batches-py")
        return _from_base(base, image_size, augment, val_fraction, split_seed)
    for base in standard_places():
        if _usable(base):
            return _from_base(base, image_size, augment, val_fraction, split_seed)
    target = cache_dir() / "datasets" / "cifar10"
    if download and not os.environ.get("LEANNET_OFFLINE"):
        try:
            import torchvision.datasets as tvd
            tvd.CIFAR10(str(target), train=True, download=True)
            return _from_base(target, image_size, augment, val_fraction, split_seed)
        except LeannetError:
            raise
        except Exception:
            pass
    raise LeannetError("cifar10 not found: pass --data-root (train/ and test/ class folders or "
                       f"cifar-10-batches-py), or put it in {standard_places()[0]}, or go online "
                       "for torchvision's download")
