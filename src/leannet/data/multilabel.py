"""Multi-task data in memory, and `multilabel-csv:PATH`: a user's images with one label column per task.

The CSV has a `file` column (image paths relative to the CSV's folder), one column per task
(any labels: class names or numbers; classes are the sorted distinct values), and optionally a
`split` column (`train` / `val` / `test`). Rows marked `val` alone (no `test` rows) are the test
set and validation is carved from the training rows; without the column a seeded 20% is the test
set and validation (`val_fraction`) is drawn from the rest.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from leannet.data.registry import DataSource, register_source
from leannet.errors import LeannetError
from leannet.data.splits import check_fraction
from leannet.data.transforms import channel_stats

SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
TEST_FRACTION = 0.2


class MultiTaskTensorDataset(Dataset):
    """uint8 images (N, C, H, W) and {task: labels (N,)}; items are (float image, {task: label})."""

    def __init__(self, images: torch.Tensor, labels: dict[str, torch.Tensor], mean: list[float],
                 std: list[float]) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("images must be a uint8 tensor (N, C, H, W)")
        if any(len(v) != len(images) for v in labels.values()):
            raise ValueError("every task needs one label per image")
        self.images = images
        self.labels = {t: v.long() for t, v in labels.items()}
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = (self.images[index].float() / 255 - self.mean) / self.std
        return x, {t: v[index] for t, v in self.labels.items()}


def multitask_tensor_source(name: str, train: tuple[torch.Tensor, dict[str, torch.Tensor]],
                            val: tuple[torch.Tensor, dict[str, torch.Tensor]],
                            tasks: dict[str, int], class_names: dict[str, list[str]] | None = None,
                            test: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None,
                            splits: dict[str, str] | None = None) -> DataSource:
    """A task="multitask" DataSource over uint8 images, normalised by the training images' stats.

    `num_classes` is the first task's class count; every task's count is in `extra['tasks']`.
    `test` is the held-out set reports use; `splits` says where each set came from.
    """

    mean, std = channel_stats(train[0])
    first = next(iter(tasks))
    names = (class_names or {}).get(first) or [str(i) for i in range(tasks[first])]
    return DataSource(
        name=name, train=MultiTaskTensorDataset(train[0], train[1], mean, std),
        val=MultiTaskTensorDataset(val[0], val[1], mean, std), num_classes=tasks[first],
        in_channels=int(train[0].shape[1]), image_size=int(train[0].shape[-1]), task="multitask",
        class_names=list(names),
        extra={"tasks": dict(tasks), "class_names": dict(class_names or {}), "mean": mean,
               "std": std},
        test=MultiTaskTensorDataset(test[0], test[1], mean, std) if test is not None else None,
        splits=dict(splits or {}))


def read_label_csv(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of the CSV and its task columns (all but `file` and `split`)."""
    if not path.is_file():
        raise LeannetError(f"multilabel-csv: {path} is not a file; expected a CSV with a 'file' "
                           "column and one label column per task")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    if "file" not in columns:
        raise LeannetError(f"{path} has no 'file' column (columns: {', '.join(columns)})")
    tasks = [c for c in columns if c not in ("file", "split")]
    if not tasks:
        raise LeannetError(f"{path} has no label columns; expected one column per task beside 'file'")
    if not rows:
        raise LeannetError(f"{path} has no rows")
    return rows, tasks


def _load_images(folder: Path, rows: list[dict[str, str]], size: int, channels: int) -> torch.Tensor:
    """Decode, convert and resize every listed image into one uint8 tensor (N, C, size, size)."""
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    out = torch.empty((len(rows), channels, size, size), dtype=torch.uint8)
    for i, row in enumerate(rows):
        file = folder / row["file"]
        try:
            with Image.open(file) as image:
                array = np.asarray(image.convert(mode).resize((size, size), Image.Resampling.BILINEAR))
        except (OSError, ValueError) as err:
            raise LeannetError(f"cannot read image {file} listed in the CSV ({err})") from None
        out[i] = torch.from_numpy(array.reshape(size, size, channels).copy()).permute(2, 0, 1)
    return out


def _split(rows: list[dict[str, str]], seed: int, val_fraction: float
           ) -> tuple[np.ndarray, dict[str, str]]:
    """Each row's split (0 train, 1 val, 2 test) and where each split came from."""
    rng = np.random.default_rng(seed)
    which = np.zeros(len(rows), dtype=np.int64)
    notes = {"train": "the CSV's training rows"}
    if rows and "split" in rows[0]:
        bad = sorted({r["split"] for r in rows if r["split"].lower() not in SPLITS})
        if bad:
            raise LeannetError(f"unknown split value(s) {bad}; expected train, val or test")
        named = np.array([SPLITS[r["split"].lower()] for r in rows])
        which[named == "val"] = 1
        which[named == "test"] = 2
        if not (which == 2).any():  # a lone held-out split reports; validation is carved
            which[which == 1] = 2
            notes["test"] = "the CSV's rows marked val (there are no test rows)"
        else:
            notes["test"] = "the CSV's rows marked test"
            notes["val"] = "the CSV's rows marked val"
    else:
        order = rng.permutation(len(rows))
        which[order[: max(1, int(round(len(rows) * TEST_FRACTION)))]] = 2
        notes["test"] = f"a random {TEST_FRACTION:g} of the rows (seed {seed})"
    if not (which == 1).any():
        train = np.flatnonzero(which == 0)
        count = max(1, int(round(len(train) * val_fraction))) if len(train) > 1 else 0
        which[rng.permutation(train)[:count]] = 1
        notes["val"] = f"a random {val_fraction:g} of the training rows (seed {seed})"
    return which, notes


@register_source("multilabel-csv:", "your images with a CSV: a 'file' column and one label "
                 "column per task (multi-task)")
def multilabel_csv(root: Path | None = None, arg: str | None = None, image_size: int | None = None,
                   channels: int | None = None, seed: int = 0, val_fraction: float = 0.1,
                   **_: object) -> DataSource:
    """Images listed in the CSV at `arg`, one task per label column, resized to `image_size`."""
    if not arg:
        raise LeannetError("multilabel-csv needs a path: multilabel-csv:PATH/TO/labels.csv")
    path = Path(arg).expanduser()
    rows, task_names = read_label_csv(path)
    for t in task_names:
        empty = [r["file"] for r in rows if not r.get(t)]
        if empty:
            raise LeannetError(f"task {t!r} has no label for {empty[0]} ({len(empty)} rows)")
    classes = {t: sorted({r[t] for r in rows}, key=_natural) for t in task_names}
    labels = {t: torch.tensor([classes[t].index(r[t]) for r in rows]) for t in task_names}
    if channels is None:
        from PIL import Image

        try:
            with Image.open(path.parent / rows[0]["file"]) as first:
                channels = 1 if first.mode in ("L", "1", "I", "I;16") else 3
                image_size = image_size or first.size[0]
        except OSError as err:
            raise LeannetError(f"cannot read image {rows[0]['file']} listed in {path} ({err})") from None
    images = _load_images(path.parent, rows, int(image_size or 32), int(channels))
    check_fraction(val_fraction)
    which, notes = _split(rows, seed, val_fraction)
    split = torch.from_numpy(which)
    if any(not (split == k).any() for k in range(3)):
        raise LeannetError(f"{path}: the train, val and test splits each need at least one image "
                           f"({len(rows)} rows)")
    pick = lambda k: (images[split == k], {t: v[split == k] for t, v in labels.items()})  # noqa: E731
    return multitask_tensor_source(f"multilabel-csv:{path}", pick(0), pick(1),
                                   {t: len(c) for t, c in classes.items()}, classes,
                                   test=pick(2), splits=notes)


def _natural(value: str) -> tuple:
    """Sort numbers numerically and names alphabetically."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)
