"""The YOLO dataset layout: data.yaml (`path`, `train`, `val`, `test`, `names`), images/, labels/.

Each image `.../images/<split>/x.jpg` has labels in `.../labels/<split>/x.txt`, one object per
line `class cx cy w h` (normalised to [0, 1]). Images without a label file are backgrounds; label
files without an image are skipped with a warning; malformed lines raise LeannetError naming file
and line.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor

from leannet.errors import LeannetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def read_data_yaml(path: Path) -> dict:
    """data.yaml with `train`/`val`/`test` resolved to folders (None when absent or empty) and
    `names` as a list."""
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise LeannetError(f"cannot read {path}: {err}") from None
    if not isinstance(config, dict) or "names" not in config or "train" not in config:
        raise LeannetError(f"{path}: expected a mapping with 'train', 'val' and 'names'")
    base = Path(config.get("path") or ".")
    base = base if base.is_absolute() else (path.parent / base)
    names = config["names"]
    if isinstance(names, dict):
        try:
            names = [str(names[k]) for k in sorted(names, key=int)]
        except (TypeError, ValueError):
            raise LeannetError(f"{path}: 'names' keys must be class ids 0, 1, ...") from None
    if not isinstance(names, list) or not names:
        raise LeannetError(f"{path}: 'names' must be a non-empty list of class names (or a "
                           f"mapping id: name), got {names!r}")
    split = {k: base / str(config[k]) if config.get(k) else None for k in ("val", "test")}
    return {"train": base / str(config["train"]), **split, "names": [str(n) for n in names]}


def find_data_yaml(path: Path) -> Path:
    """The data.yaml of a dataset folder (or the given yaml file itself)."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise LeannetError(f"no YOLO dataset at {path}; expected a folder with data.yaml")
    for name in ("data.yaml", "data.yml"):
        if (path / name).is_file():
            return path / name
    raise LeannetError(f"{path} has no data.yaml; expected data.yaml with path, train, val, names")


def label_path(image: Path) -> Path:
    """YOLO's rule: the last `images` folder becomes `labels`, the suffix becomes .txt."""
    parts = list(image.parts)
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] == "images":
            parts[index] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def list_images(folder: Path) -> list[Path]:
    """Images under a split folder (sorted), warning about label files that have no image."""
    if not folder.is_dir():
        raise LeannetError(f"image folder {folder} does not exist")
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    labels_dir = label_path(folder / "x.jpg").parent
    if labels_dir.is_dir():
        have = {label_path(p) for p in images}
        orphans = sorted(p for p in labels_dir.rglob("*.txt") if p not in have)
        if orphans:
            warnings.warn(f"{len(orphans)} label file(s) without an image skipped in "
                          f"{labels_dir} (e.g. {orphans[0].name})", stacklevel=2)
    return images


def parse_labels(path: Path, num_classes: int) -> Tensor:
    """(G, 5) float tensor of `class cx cy w h` rows; empty for a missing file (background)."""
    if not path.is_file():
        return torch.zeros(0, 5)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) != 5:
            raise LeannetError(f"{where}: expected 5 fields 'class cx cy w h', got {len(fields)}")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise LeannetError(f"{where}: expected numbers 'class cx cy w h', "
                               f"got {line!r}") from None
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < num_classes:
            raise LeannetError(f"{where}: class id {fields[0]} is not one of the "
                               f"{num_classes} names (0..{num_classes - 1})")
        if not all(0.0 <= v <= 1.0 for v in values[1:]):
            raise LeannetError(f"{where}: coordinates must be normalised to [0, 1], got "
                               f"{' '.join(fields[1:])}")
        rows.append(values)
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 5)


def to_pixel_boxes(rows: Tensor, image_size: int) -> tuple[Tensor, Tensor]:
    """(cx, cy, w, h) normalised rows -> xyxy boxes in pixels of a square image, and labels."""
    centre, size = rows[:, 1:3], rows[:, 3:5]
    boxes = torch.cat([centre - size / 2, centre + size / 2], 1).clamp(0, 1) * image_size
    return boxes, rows[:, 0].long()
