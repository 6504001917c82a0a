"""Image-folder sources: `imagefolder:PATH` (class subfolders) and `cifar10` (that layout or
torchvision's on-disk batches). Decoded images are cached as tensors (see `leannet.data.cache`).
"""
from __future__ import annotations

import json
import os
import stat
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rich.console import Console
from rich.progress import track

from leannet.data.cache import cache_dir, cache_key, cached_tensors
from leannet.data.registry import DataSource, register_source
from leannet.data.splits import (DEFAULT_VAL_FRACTION, SPLIT_SEED, carved_note, check_fraction,
                                 stratified_indices)
from leannet.data.tensors import classification_source
from leannet.data.transforms import resize_uint8
from leannet.errors import LeannetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
DEFAULT_SIZE = 224  # when neither --image-size nor a model says: what zoo models expect
MAX_PIXELS = 64_000_000  # larger images are refused as decompression bombs
MEMORY_LIMIT_ENV = "LEANNET_DECODE_LIMIT_GB"  # the most decoded images may take, in GB
DEFAULT_LIMIT_GB = 8.0
ANNOUNCE_BYTES = 1 << 30  # say how large the decoded set is before building one over 1 GB
TRAIN_NAMES = ("train",)
VAL_NAMES = ("val", "valid", "validation")
TEST_NAMES = ("test",)
TEST_FRACTION = 0.2  # held out as the test set of a folder that has no held-out subfolder


def class_files(folder: Path) -> dict[str, list[Path]]:
    """Image files per class subfolder of `folder` (sorted, hidden files skipped)."""
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.iterdir()
                       if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
        for f in files:
            _check_regular(f)
        if files:
            classes[sub.name] = files
    return classes


def _check_regular(path: Path) -> None:
    """An image must be a regular file: a FIFO would block forever, a dangling link can't open."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise LeannetError(f"{path} is a broken link or cannot be read") from None
    if not stat.S_ISREG(mode):
        raise LeannetError(f"{path} is not a regular file (a FIFO, device or folder); expected an "
                           "image file")


def split_layout(root: Path) -> dict[str, Path | None] | None:
    """{train, val, test} subfolders of `root` when it has `train/` and a held-out folder, else None.

    A lone held-out folder (`val/` or `test/`) becomes the test set and validation is carved from
    `train/`: a folder used to pick the best epoch must not also be the one reported.
    """
    train = next((root / n for n in TRAIN_NAMES if (root / n).is_dir()), None)
    val = next((root / n for n in VAL_NAMES if (root / n).is_dir()), None)
    test = next((root / n for n in TEST_NAMES if (root / n).is_dir()), None)
    if train is None or (val is None and test is None):
        return None
    if test is None:
        val, test = None, val
    return {"train": train, "val": val, "test": test}


def split_folders(root: Path) -> tuple[Path, Path] | None:
    """(train, held-out) subfolders of `root` when it has both, else None."""
    layout = split_layout(root)
    return (layout["train"], layout["test"]) if layout else None  # type: ignore[return-value]


GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
                 Image.DecompressionBombWarning)


def _open(path: Path) -> Image.Image:
    """Open an image, refusing decompression bombs (a few KB that decode to gigapixels)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(path)
        if image.width * image.height > MAX_PIXELS:
            image.close()
            raise ValueError(f"{image.width}x{image.height} pixels is more than the "
                             f"{MAX_PIXELS:,} leannet accepts (a decompression bomb?)")
        image.load()
    return image


def _read_mode(first: Path) -> str:
    """RGB unless the first image is greyscale, in which case every image is read as grey ("L")."""
    try:
        with _open(first) as image:
            return "L" if image.mode in GREY_MODES else "RGB"
    except DECODE_ERRORS as err:
        raise LeannetError(f"cannot decode image {first}: {_reason(err)}") from None


def _reason(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _decode(path: Path, mode: str) -> torch.Tensor:
    """Decode one image file to uint8 (C, H, W); a corrupt file is a one-line error naming it.

    16-bit and float greyscale are scaled to 0-255 (PIL's own conversion clips them to white);
    CMYK, palette and alpha images are converted by PIL.
    """
    try:
        with _open(path) as image:
            if image.mode.startswith("I") or image.mode == "F":
                wide = np.asarray(image, dtype=np.float64)
                top = 65535.0 if image.mode.startswith("I;16") or wide.max() > 255 else 255.0
                grey = np.clip(wide / top * 255.0, 0, 255).round().astype(np.uint8)
                array = grey if mode == "L" else np.repeat(grey[..., None], 3, axis=2)
            else:
                array = np.asarray(image.convert(mode), dtype=np.uint8)
    except DECODE_ERRORS as err:
        raise LeannetError(f"cannot decode image {path}: {_reason(err)}") from None
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def decode_all(files: list[Path], size: int, mode: str, label: str = "decoding") -> torch.Tensor:
    """Decode and resize `files` to uint8 (N, C, size, size), with a progress bar for many files."""
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
                times = [e.stat(follow_symlinks=False).st_mtime_ns for e in entries]
            marks.append([str(sub.resolve()), len(times), max(times + [sub.stat().st_mtime_ns])])
    return marks


def _flatten(groups: dict[str, list[Path]], names: list[str]) -> tuple[list[Path], torch.Tensor]:
    """Files of every class in `names` order, with their class indices as labels."""
    files = [f for n in names for f in groups.get(n, [])]
    labels = torch.tensor([i for i, n in enumerate(names) for _ in groups.get(n, [])],
                          dtype=torch.long)
    return files, labels


def _decode_splits(name: str, layout: dict[str, Path | None], size: int | None
                   ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Decode the train class folders and any held-out ones (`val`, `test`) that exist."""
    train_dir = layout["train"]
    assert train_dir is not None
    classes = class_files(train_dir)
    if not classes:
        raise LeannetError(f"{train_dir} holds no class subfolders with images "
                           f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    names = list(classes)
    if len(names) < 2:
        raise LeannetError(f"{train_dir} holds one class ({names[0]}); a classifier needs at least "
                           "two class subfolders")
    first = classes[names[0]][0]
    mode = _read_mode(first)
    size = int(size or DEFAULT_SIZE)
    parts = {"train": _flatten(classes, names)}
    for split in ("val", "test"):
        folder = layout.get(split)
        if folder is None:
            continue
        held = class_files(folder)
        unknown = sorted(set(held) - set(names))
        if unknown:
            raise LeannetError(f"{folder} has classes not in {train_dir}: {', '.join(unknown[:5])}")
        if not held:
            raise LeannetError(f"{folder} holds no class subfolders with images")
        parts[split] = _flatten(held, names)
    _check_memory(name, sum(len(f) for f, _ in parts.values()), 1 if mode == "L" else 3, size)
    tensors = {}
    for split, (files, labels) in parts.items():
        tensors[f"{split}_images"] = decode_all(files, size, mode, f"decoding {name} {split}")
        tensors[f"{split}_labels"] = labels
    return tensors, names


def _check_memory(name: str, count: int, channels: int, size: int) -> None:
    """Refuse a decoded set larger than the limit, and say how large a big one will be."""
    needed = count * channels * size * size
    limit = float(os.environ.get(MEMORY_LIMIT_ENV, DEFAULT_LIMIT_GB))
    if needed > limit * 1e9:
        raise LeannetError(f"{name}: {count:,} images at {size}x{size} need {needed / 1e9:.1f} GB "
                           f"decoded, over the {limit:g} GB limit; pass a smaller --image-size or "
                           f"raise {MEMORY_LIMIT_ENV}")
    if needed > ANNOUNCE_BYTES:
        print(f"decoding {count:,} images at {size}x{size}: {needed / 1e9:.1f} GB in memory, "
              f"cached under {cache_dir() / 'data'}", file=sys.stderr)


def folder_source(name: str, root: Path, image_size: int | None, augment: bool, flip: bool,
                  padding: int | None = None, val_fraction: float = DEFAULT_VAL_FRACTION,
                  split_seed: int = SPLIT_SEED) -> DataSource:
    """A classify source from `root`: `train/` with `val/` and/or `test/`, or class folders alone.

    A missing test set is carved from the training images (20%, fixed seed 0, so it never moves);
    a missing validation set is carved from what remains (`val_fraction`, `split_seed`).
    """
    check_fraction(val_fraction)
    if not root.is_dir():
        raise LeannetError(f"data root {root} does not exist or is not a folder")
    layout = split_layout(root) or {"train": root, "val": None, "test": None}
    folders = [f for f in layout.values() if f is not None]
    key = cache_key(name, str(root.resolve()), image_size, _fingerprint(folders),
                    {k: str(v) for k, v in layout.items()}, "splits-v2")

    def build():
        tensors, names = _decode_splits(name, layout, image_size)
        return tensors, {"class_names": json.dumps(names)}

    tensors, meta = cached_tensors(name.replace("/", "_").replace(":", "_")[:40], key, build)
    names = json.loads(meta["class_names"])
    size = tensors["train_images"].shape[-1]
    pairs, notes = _carve_missing(tensors, layout, val_fraction, split_seed)
    return classification_source(
        name, pairs["train"], pairs["val"], names, None,
        padding=size // 8 if padding is None else padding, flip=flip, augment=augment,
        extra={"root": str(root)}, test=pairs["test"], splits=notes)


def _carve_missing(tensors: dict[str, torch.Tensor], layout: dict[str, Path | None],
                   val_fraction: float, split_seed: int) -> tuple[dict, dict[str, str]]:
    """(images, labels) per split, carving test and then validation from train where missing."""
    pairs = {split: (tensors[f"{split}_images"], tensors[f"{split}_labels"])
             for split in ("train", "val", "test") if f"{split}_images" in tensors}
    notes = {split: f"the {layout[split].name}/ folder"  # type: ignore[union-attr]
             for split in pairs}
    carved_any = False
    for split, fraction, seed in (("test", TEST_FRACTION, 0), ("val", val_fraction, split_seed)):
        if split in pairs:
            continue
        carved_any = True
        images, labels = pairs["train"]
        kept, carved = stratified_indices(labels, fraction, seed)
        if len(kept) == 0 or len(carved) == 0:
            raise LeannetError(f"{layout['train']} has too few images to hold out a {split} set "
                               "(each class needs at least two)")
        pairs["train"], pairs[split] = (images[kept], labels[kept]), (images[carved], labels[carved])
        held = split == "val" and layout.get("test") is None
        notes[split] = carved_note(fraction, seed, "remaining training" if held else "training")
    if carved_any:
        notes["train"] += f" less the carved images ({len(pairs['train'][1]):,} left)"
    return pairs, notes


@register_source("imagefolder:", "any folder of class subfolders: imagefolder:PATH "
                 "(train/ with val/ and/or test/ inside, else 20% held out as test)",
                 available=lambda root: True)
def imagefolder(root: Path | None = None, arg: str | None = None, image_size: int | None = None,
                augment: bool = True, flip: bool = False,
                val_fraction: float = DEFAULT_VAL_FRACTION, split_seed: int = SPLIT_SEED,
                **_: object) -> DataSource:
    """Images under PATH/<class>/ (or PATH/train|val/<class>/); no flips unless asked."""
    if not arg:
        raise LeannetError("imagefolder needs a path: imagefolder:PATH")
    path = Path(arg).expanduser()
    if not path.is_absolute() and root is not None:
        path = root / path
    return folder_source(f"imagefolder:{arg}", path, image_size, augment, flip,
                         val_fraction=val_fraction, split_seed=split_seed)
