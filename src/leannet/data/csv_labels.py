"""Image-level labels from a CSV that a YOLO folder's data.yaml names (`labels_csv:`).

Boxes and masks say what is where; what a whole image is (a scene, a quality grade, its tags)
often lives in a spreadsheet beside the images. data.yaml names it, and a multi-head model gets
a classify or multi-label head for it next to detect / segment:

    labels_csv: labels.csv            # short form: task "classify", one label per image
    labels_csv:                       # long form
      file: labels.csv                # inside the folder holding data.yaml
      task: scene                     # the task's name for --tasks (default classify / tags)
      kind: classify                  # classify (one label per image) or multilabel
      names: [indoor, outdoor]        # the class order (default: the CSV's labels, sorted)

The CSV has a header row and two columns, `image,label`: the image's file name (or its path
relative to the folder), and its label, or for multilabel its labels joined by `;` (an empty
field: no label). Every image the model trains or is evaluated on needs a row. Paths stay inside
the folder; a bad row is one LeannetError naming the file and line.
"""
from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath
from typing import Any

from leannet.errors import LeannetError

KINDS = ("classify", "multilabel")
DEFAULT_TASK = {"classify": "classify", "multilabel": "tags"}


def _inside(root: Path, relative: str, what: str) -> Path:
    """`root / relative`, refusing absolute paths and paths that leave `root`."""
    pure = PurePosixPath(relative.replace("\\", "/"))
    if not pure.parts or pure.is_absolute() or ":" in pure.parts[0]:  # /x, C:\x, C:x
        raise LeannetError(f"{what} must be a path inside the dataset folder, got {relative!r}")
    path = (root / Path(*pure.parts)).resolve()
    if not path.is_relative_to(root.resolve()):
        raise LeannetError(f"{what} must stay inside the dataset folder {root}, got {relative!r}")
    return path


def _spec(value: Any, where: str) -> dict[str, Any]:
    """The long form of data.yaml's `labels_csv:` entry, checked."""
    spec = {"file": value} if isinstance(value, str) else value
    if not isinstance(spec, dict) or not isinstance(spec.get("file"), str) or not spec["file"]:
        raise LeannetError(f"{where}: labels_csv must be a CSV file name or a mapping with "
                           f"'file' (and optional task, kind, names), got {value!r}")
    unknown = sorted(set(spec) - {"file", "task", "kind", "names"})
    if unknown:
        raise LeannetError(f"{where}: labels_csv has unknown key(s) {', '.join(unknown)}; "
                           "expected file, task, kind, names")
    kind = spec.get("kind", "classify")
    if kind not in KINDS:
        raise LeannetError(f"{where}: labels_csv kind must be classify or multilabel, got {kind!r}")
    task = spec.get("task", DEFAULT_TASK[kind])
    if not isinstance(task, str) or not task.isidentifier():
        raise LeannetError(f"{where}: labels_csv task must be a name like 'scene', got {task!r}")
    names = spec.get("names")
    if names is not None and (not isinstance(names, list) or not names
                              or len(set(map(str, names))) != len(names)):
        raise LeannetError(f"{where}: labels_csv names must be a list of distinct class names, "
                           f"got {names!r}")
    return {"file": spec["file"], "task": task, "kind": kind,
            "names": None if names is None else [str(n) for n in names]}


class LabelTable:
    """The labels of a `labels_csv:`: `labels(image)` -> class indices of one image."""

    def __init__(self, data_yaml: Path, value: Any) -> None:
        where = str(data_yaml)
        spec = _spec(value, where)
        self.root = data_yaml.parent.resolve()
        self.path = _inside(self.root, spec["file"], "labels_csv file")
        self.task, self.kind = spec["task"], spec["kind"]
        rows = self._read()
        found = sorted({label for labels, _ in rows.values() for label in labels})
        self.names: list[str] = spec["names"] or found
        if not self.names:
            raise LeannetError(f"{self.path}: no labels in the CSV")
        index = {name: i for i, name in enumerate(self.names)}
        self.by_key: dict[str, list[int]] = {}
        for key, (labels, line) in rows.items():
            unknown = [label for label in labels if label not in index]
            if unknown:
                raise LeannetError(f"{self.path}:{line}: label {unknown[0]!r} is not one of the "
                                   f"names in data.yaml ({', '.join(self.names)})")
            self.by_key[key] = sorted(index[label] for label in labels)

    def _read(self) -> dict[str, tuple[list[str], int]]:
        """{image key: (labels, line number)} with every row checked."""
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            raise LeannetError(f"cannot read labels_csv {self.path}: {err}") from None
        reader = csv.reader(text.splitlines())
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header] != ["image", "label"]:
            raise LeannetError(f"{self.path}:1: expected the header row 'image,label', "
                               f"got {','.join(header or [])!r}")
        rows: dict[str, tuple[list[str], int]] = {}
        for line, fields in enumerate(reader, start=2):
            if not fields or not "".join(fields).strip():
                continue
            where = f"{self.path}:{line}"
            if len(fields) != 2:
                raise LeannetError(f"{where}: expected 2 fields 'image,label', got {len(fields)}")
            image, label = fields[0].strip(), fields[1].strip()
            if not image:
                raise LeannetError(f"{where}: the image field is empty")
            key = self._key(_inside(self.root, image, f"{where}: the image"), image)
            labels = [p.strip() for p in label.split(";")] if self.kind == "multilabel" \
                else [label]
            labels = [p for p in labels if p] if self.kind == "multilabel" else labels
            if self.kind == "classify" and (not label or ";" in label):
                raise LeannetError(f"{where}: a classify task needs exactly one label per image, "
                                   f"got {label!r} (kind: multilabel takes several, ';'-joined)")
            if key in rows:
                raise LeannetError(f"{where}: image {image!r} already has a row (line "
                                   f"{rows[key][1]})")
            rows[key] = (labels, line)
        if not rows:
            raise LeannetError(f"{self.path}: no rows after the header 'image,label'")
        return rows

    def _key(self, path: Path, written: str) -> str:
        """Rows match images by path relative to the folder, or by bare file name."""
        return written if "/" not in written.replace("\\", "/") else \
            path.relative_to(self.root).as_posix()

    def labels(self, image: Path) -> list[int]:
        """Class indices of `image`; one clear line when its row is missing."""
        path = Path(image).resolve()
        relative = path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) \
            else None
        for key in (relative, path.name):
            if key is not None and key in self.by_key:
                return self.by_key[key]
        raise LeannetError(f"image {path.name} has no row in {self.path.name} (needed by the "
                           f"{self.task!r} task); add '{path.name},<label>'")

    def task_spec(self) -> dict[str, Any]:
        """The task as multihead views describe tasks."""
        return {"kind": self.kind, "labels": "csv", "classes": len(self.names),
                "class_names": list(self.names)}


def read_labels_csv(data_yaml: Path) -> LabelTable | None:
    """The LabelTable of the data.yaml at `data_yaml`, or None when it names no labels_csv."""
    import yaml

    try:
        config = yaml.safe_load(Path(data_yaml).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise LeannetError(f"cannot read {data_yaml}: {err}") from None
    if not isinstance(config, dict) or config.get("labels_csv") is None:
        return None
    return LabelTable(Path(data_yaml), config["labels_csv"])
