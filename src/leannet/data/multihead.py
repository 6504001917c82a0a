"""Several labels per image for multi-head models: boxes, a semantic mask, image-level labels.

A detection set is viewed with a task spec: which tasks, and where each label comes from.
Masks come from the set's own `mask(index)` (digits-detect) or, for a YOLO folder, from the
`masks.yaml` beside its data.yaml (per split an images and a masks folder, and the classes;
../shared/data/coco128 has one).
Label sources: `boxes` (YOLO boxes, for a detect head), `mask` (per-pixel classes, 0 =
background), `count` (how many boxes, an image-level class), `present` (which box classes
occur, a multi-label target) and `csv` (image-level labels from the CSV that a YOLO folder's
data.yaml names under `labels_csv:`, see `leannet.data.csv_labels`). Samples are (float image,
{task: target}); batch them with `multi_target_collate`. Augmentation moves image, boxes and
mask together (torchvision v2).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from leannet.data.box_augment import IGNORE, box_augment, to_input
from leannet.data.csv_labels import LabelTable, read_labels_csv
from leannet.data.yolo_format import to_pixel_boxes
from leannet.data.registry import DataSource
from leannet.errors import LeannetError

# label source -> the head kind that reads it
LABELS = {"boxes": "detect", "mask": "segment", "count": "classify", "present": "multilabel",
          "csv": "classify or multilabel"}


def parse_tasks(text: str | Sequence[str], available: dict[str, dict[str, Any]]
                ) -> dict[str, dict[str, Any]]:
    """`detect,segment,classify` -> the source's spec of each named task, in the given order."""
    names = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    if not names:
        raise LeannetError("--tasks needs at least one task, e.g. detect,segment,classify")
    unknown = [n for n in names if n not in available]
    if unknown:
        raise LeannetError(f"task(s) {', '.join(unknown)} are not labelled in this source; it "
                           f"has {', '.join(available)}")
    if len(set(names)) != len(names):
        raise LeannetError(f"--tasks names a task twice: {','.join(names)}")
    return {n: dict(available[n]) for n in names}


def find_masks_yaml(images: Sequence[Path]) -> Path | None:
    """The masks.yaml of a YOLO dataset: beside its data.yaml, up to three folders above the
    images (the layout of ../shared/data/coco128)."""
    if not images:
        return None
    for folder in list(Path(images[0]).parents)[:4]:
        if (folder / "masks.yaml").is_file():
            return folder / "masks.yaml"
    return None


class FolderMasks:
    """Semantic masks of a YOLO folder as masks.yaml describes them: per split an `images` and a
    `masks` folder (one PNG of class ids per image stem) and the `classes` {id: name}, mapped
    here to 0..K-1 in the file's order (ids are sparse, COCO panoptic ones). Images without a
    mask file get IGNORE everywhere, so the loss and the metrics skip them."""

    def __init__(self, path: Path) -> None:
        import yaml

        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise LeannetError(f"cannot read {path}: {err}") from None
        classes = config.get("classes") if isinstance(config, dict) else None
        if not isinstance(classes, dict) or not classes:
            raise LeannetError(f"{path}: expected 'classes' mapping mask ids to names")
        self.root = path.parent
        self.ids = [int(k) for k in classes]
        self.names = [str(v) for v in classes.values()]
        self.lookup = torch.full((256,), IGNORE, dtype=torch.long)
        self.lookup[torch.tensor(self.ids)] = torch.arange(len(self.ids))
        self.splits = [(self.root / str(v["images"]), self.root / str(v["masks"]))
                       for v in config.values() if isinstance(v, dict) and "masks" in v]

    def mask_file(self, image: Path) -> Path | None:
        for images, masks in self.splits:
            if Path(image).parent.resolve() == images.resolve():
                found = masks / (Path(image).stem + ".png")
                return found if found.is_file() else None
        return None

    def mask(self, image: Path, size: int) -> Tensor:
        """The (size, size) int64 class-index mask of `image` (nearest-resized), or IGNORE."""
        from PIL import Image

        path = self.mask_file(image)
        if path is None:
            return torch.full((size, size), IGNORE, dtype=torch.long)
        with Image.open(path) as picture:
            ids = torch.from_numpy(np.asarray(picture.convert("L"), dtype=np.int64))
        resized = v2.functional.resize(ids[None].to(torch.uint8), [size, size],
                                       interpolation=v2.InterpolationMode.NEAREST)[0]
        return self.lookup[resized.long()]


def _render(base: Any, index: int) -> tuple[Tensor, dict[str, Tensor]]:
    """The un-augmented uint8 image and boxes of item `index` of a detection set."""
    if callable(getattr(base, "render", None)):
        return base.render(index)
    image = base._image(index)  # a YOLO folder: decoded once at the input size, then cached
    boxes, labels = to_pixel_boxes(base.rows[index], base.image_size)
    return image, {"boxes": boxes, "labels": labels}


def _masks_of(base: Any) -> Callable[[int], Tensor] | None:
    """How to read item `index`'s mask: the set's own `mask()`, or a YOLO folder's masks.yaml."""
    if callable(getattr(base, "mask", None)):
        return base.mask
    found = find_masks_yaml(getattr(base, "images", []))
    if found is None:
        return None
    masks = FolderMasks(found)
    return lambda index: masks.mask(base.images[index], base.image_size)


class MultiTargetView(Dataset):
    """A detection set whose items are (image, {task: target}) for the spec's tasks."""

    def __init__(self, base: Any, tasks: dict[str, dict[str, Any]], augment: bool,
                 table: LabelTable | None = None) -> None:
        if not callable(getattr(base, "render", None)) and not hasattr(base, "rows"):
            raise LeannetError(f"{type(base).__name__} cannot give per-task labels")
        self.base, self.tasks = base, tasks
        self.masks = _masks_of(base)
        if self.masks is None and any(t["labels"] == "mask" for t in tasks.values()):
            raise LeannetError(f"{type(base).__name__} has no masks for a segment task")
        self.table = table if any(t["labels"] == "csv" for t in tasks.values()) else None
        if self.table is not None:  # every image needs its row: say so now, not mid-epoch
            if not hasattr(base, "images"):
                raise LeannetError(f"{type(base).__name__} has no image files for labels_csv")
            self.csv_labels = [self.table.labels(image) for image in base.images]
        self.augment = box_augment(flip=False, scale=(0.85, 1.15), translate=0.08, jitter=0.0) \
            if augment else None

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image, target = _render(self.base, index)
        size = image.shape[-2:]
        mask = self.masks(index) if self.masks is not None else torch.zeros(size, dtype=torch.long)
        target = {**target, "mask": mask}
        if self.augment:  # None or False (loaders.plain switches it off)
            image, target = self.augment(image, target)
        if self.table is not None:  # image-level: no augmentation moves it
            target["csv"] = torch.tensor(self.csv_labels[index], dtype=torch.long)
        return to_input(image), {name: self._label(spec, target) for name, spec in self.tasks.items()}

    @staticmethod
    def _label(spec: dict[str, Any], target: dict[str, Tensor]) -> Any:
        source = spec["labels"]
        if source == "boxes":
            return {"boxes": target["boxes"], "labels": target["labels"]}
        if source == "mask":
            return target["mask"].long()
        if source == "count":
            return torch.tensor(min(len(target["labels"]), spec["classes"] - 1))
        if source == "csv" and spec["kind"] == "classify":
            return target["csv"][0]
        present = torch.zeros(spec["classes"])
        present[(target["csv"] if source == "csv" else target["labels"]).long()] = 1.0
        return present

    def box_sizes(self) -> Tensor:
        """Box sizes of the underlying set (for k-means anchors)."""
        return self.base.box_sizes()


def multi_target_collate(batch: Sequence[tuple[Tensor, dict[str, Any]]]
                         ) -> tuple[Tensor, dict[str, Any]]:
    """Stack images and tensor targets; box targets stay a list per image."""
    images = torch.stack([image for image, _ in batch])
    targets: dict[str, Any] = {}
    for name, first in batch[0][1].items():
        column = [t[name] for _, t in batch]
        targets[name] = column if isinstance(first, dict) else torch.stack(column)
    return images, targets


def available_tasks(source: DataSource) -> dict[str, dict[str, Any]]:
    """The tasks a detection source can label: `extra["labels"]` when it says, else derived from
    what it has: detect (boxes), labels (classes present), classify (box count, when the source
    has `count_classes`), segment (when its images have a `mask()`: classes + 1, 0 background)."""
    if source.extra.get("labels"):
        return dict(source.extra["labels"])
    if source.task != "detect":
        return {}
    names = [str(n) for n in source.class_names] or [str(i) for i in range(source.num_classes)]
    tasks: dict[str, dict[str, Any]] = {
        "detect": {"kind": "detect", "labels": "boxes", "classes": source.num_classes,
                   "class_names": names}}
    if callable(getattr(source.val, "mask", None)):
        tasks["segment"] = {"kind": "segment", "labels": "mask", "classes": source.num_classes + 1,
                            "class_names": ["background", *names]}
    elif (found := find_masks_yaml(getattr(source.train, "images", []))) is not None:
        masks = FolderMasks(found)
        tasks["segment"] = {"kind": "segment", "labels": "mask", "classes": len(masks.ids),
                            "class_names": masks.names}
    if source.extra.get("count_classes"):
        tasks["classify"] = {"kind": "classify", "labels": "count",
                             "classes": int(source.extra["count_classes"])}
    tasks["labels"] = {"kind": "multilabel", "labels": "present", "classes": source.num_classes,
                       "class_names": names}
    table = _table(source)
    if table is not None:  # a user's own image-level task; its name wins over a derived one
        tasks[table.task] = table.task_spec()
    return tasks


def _table(source: DataSource) -> LabelTable | None:
    """The labels_csv of a YOLO folder's data.yaml, if it names one."""
    data_yaml = source.extra.get("data_yaml")
    return read_labels_csv(Path(data_yaml)) if data_yaml else None


def multihead_view(source: DataSource, tasks: str | Sequence[str]) -> DataSource:
    """`source` as a multihead source whose samples carry one label per named task."""
    available = available_tasks(source)
    if not available:
        raise LeannetError(f"data source {source.name!r} does not label several tasks per image; "
                           "--tasks needs one that does, such as digits-detect")
    spec = parse_tasks(tasks, available)
    table = _table(source) if any(t["labels"] == "csv" for t in spec.values()) else None

    def view(dataset: Any, augment: bool) -> Any:
        return None if dataset is None else MultiTargetView(dataset, spec, augment, table)

    train_augment = getattr(source.train, "augment", None) is not None
    extra = {**source.extra, "tasks": spec, "collate_fn": multi_target_collate}
    views = {"train": view(source.train, train_augment), "val": view(source.val, False)}
    if getattr(source, "test", None) is not None:
        views["test"] = view(source.test, False)
    return replace(source, task="multihead", extra=extra, **views)
