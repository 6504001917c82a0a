"""Image-folder sources: `imagefolder:PATH` (class subfolders) and `cifar10` (that layout or
torchvision's on-disk batches). Decoded images are cached as tensors (see `leannet.data.cache`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from leannet.data.cache import cache_key, cached_tensors
from leannet.data.registry import DataSource, register_source
from leannet.data.tensors import classification_source
from leannet.errors import LeannetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
TRAIN_NAMES = ("train",)
VAL_NAMES = ("val", "valid", "validation", "test")


def class_files(folder: Path) -> dict[str, list[Path]]:
    """Image files per class subfolder of `folder` (sorted, hidden files skipped)."""
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.iterdir()
                       if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
        if files:
            classes[sub.name] = files
    return classes


def split_folders(root: Path) -> tuple[Path, Path] | None:
    """(train, val) subfolders of `root` when it has both (`val` may be named `test`), else None."""
    train = next((root / n for n in TRAIN_NAMES if (root / n).is_dir()), None)
    val = next((root / n for n in VAL_NAMES if (root / n).is_dir()), None)
    return (train, val) if train and val else None


def _read_mode(first: Path) -> str:
    """RGB unless the first image is greyscale, in which case every image is read as grey ("L")."""
    from PIL import Image

    try:
        with Image.open(first) as image:
            return "L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
    except (OSError, ValueError) as err:
        raise LeannetError(f"cannot decode image {first}: {_reason(err)}") from None


def _reason(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _decode(path: Path, mode: str) -> torch.Tensor:
    """Decode one image file to uint8 (C, H, W); a corrupt file is a one-line error naming it."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert(mode), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as err:
        raise LeannetError(f"cannot decode image {path}: {_reason(err)}") from None
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def decode_all(files: list[Path], size: int, mode: str, label: str = "decoding") -> torch.Tensor:
    """Decode and resize `files` to uint8 (N, C, size, size), with a progress bar for many files."""
    from rich.console import Console
    from rich.progress import track
    from leannet.data.transforms import resize_uint8

    console = Console(stderr=True)
    show = len(files) > 2000 and console.is_terminal
    iterator = track(files, description=label, transient=True, console=console) if show else files
    images = [resize_uint8(_decode(f, mode).unsqueeze(0), size)[0] for f in iterator]
    return torch.stack(images)


def _fingerprint(folders: list[Path]) -> list:
    """Per class folder: its path, file count and newest modification time (of it or any file).

    This is the cache key's content, so added, removed, renamed or rewritten images invalidate it.
    """
    marks = []
    for folder in folders:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            with os.scandir(sub) as entries:
                times = [e.stat().st_mtime_ns for e in entries]
            marks.append([str(sub.resolve()), len(times), max(times + [sub.stat().st_mtime_ns])])
    return marks


def _flatten(groups: dict[str, list[Path]], names: list[str]) -> tuple[list[Path], torch.Tensor]:
    """Files of every class in `names` order, with their class indices as labels."""
    files = [f for n in names for f in groups.get(n, [])]
    labels = torch.tensor([i for i, n in enumerate(names) for _ in groups.get(n, [])],
                          dtype=torch.long)
    return files, labels


def _decode_splits(name: str, train_dir: Path, val_dir: Path | None, size: int | None
                   ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Decode train (and val) class folders; without a val folder, split 80/20 stratified."""
    classes = class_files(train_dir)
    if not classes:
        raise LeannetError(f"{train_dir} holds no class subfolders with images "
                           f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    names = list(classes)
    first = classes[names[0]][0]
    mode = _read_mode(first)
    size = int(size or max(_decode(first, mode).shape[-2:]))
    files, labels = _flatten(classes, names)
    if val_dir is not None:
        val_classes = class_files(val_dir)
        unknown = sorted(set(val_classes) - set(names))
        if unknown:
            raise LeannetError(f"{val_dir} has classes not in {train_dir}: {', '.join(unknown[:5])}")
        if not val_classes:
            raise LeannetError(f"{val_dir} holds no class subfolders with images")
        val_files, val_labels = _flatten(val_classes, names)
    else:
        files, labels, val_files, val_labels = _stratified_split(files, labels)
    tensors = {"train_images": decode_all(files, size, mode, f"decoding {name} train"),
               "train_labels": labels,
               "val_images": decode_all(val_files, size, mode, f"decoding {name} val"),
               "val_labels": val_labels}
    return tensors, names


def _stratified_split(files: list[Path], labels: torch.Tensor):
    """A fixed 80/20 split that keeps every class in both parts where it has two or more images."""
    generator = torch.Generator().manual_seed(0)
    train_idx, val_idx = [], []
    for label in labels.unique().tolist():
        idx = (labels == label).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)].tolist()
        n_val = max(1, round(0.2 * len(idx))) if len(idx) > 1 else 0
        val_idx += idx[:n_val]
        train_idx += idx[n_val:]
    pick = lambda ids: ([files[i] for i in ids], labels[ids])  # noqa: E731
    return (*pick(sorted(train_idx)), *pick(sorted(val_idx)))


def folder_source(name: str, root: Path, image_size: int | None, augment: bool, flip: bool,
                  padding: int | None = None) -> DataSource:
    """A classify source from `root` (`train/` + `val|test/`, or class folders split 80/20)."""
    if not root.is_dir():
        raise LeannetError(f"data root {root} does not exist or is not a folder")
    splits = split_folders(root)
    train_dir, val_dir = splits if splits else (root, None)
    folders = [train_dir] + ([val_dir] if val_dir else [])
    key = cache_key(name, str(root.resolve()), image_size, _fingerprint(folders))

    def build():
        tensors, names = _decode_splits(name, train_dir, val_dir, image_size)
        return tensors, {"class_names": json.dumps(names)}

    tensors, meta = cached_tensors(name.replace("/", "_").replace(":", "_")[:40], key, build)
    names = json.loads(meta["class_names"])
    size = tensors["train_images"].shape[-1]
    return classification_source(
        name, (tensors["train_images"], tensors["train_labels"]),
        (tensors["val_images"], tensors["val_labels"]), names, None,
        padding=size // 8 if padding is None else padding, flip=flip, augment=augment,
        extra={"root": str(root)})


@register_source("imagefolder:", "any folder of class subfolders: imagefolder:PATH "
                 "(train/ and val/ or test/ inside, else an 80/20 split)",
                 available=lambda root: True)
def imagefolder(root: Path | None = None, arg: str | None = None, image_size: int | None = None,
                augment: bool = True, flip: bool = False, **_: object) -> DataSource:
    """Images under PATH/<class>/ (or PATH/train|val/<class>/); no flips unless asked."""
    if not arg:
        raise LeannetError("imagefolder needs a path: imagefolder:PATH")
    path = Path(arg).expanduser()
    if not path.is_absolute() and root is not None:
        path = root / path
    return folder_source(f"imagefolder:{arg}", path, image_size, augment, flip)
