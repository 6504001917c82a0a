"""Run a saved YOLO model on image files: boxes scaled back to each image, drawn, and listed.

Used by `leannet predict`; writes `<stem>.png` per image plus `detections.json`, atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from rich.progress import Progress
from torch import nn

from leannet.data.box_augment import to_input
from leannet.detect.decode import decode
from leannet.detect.draw import draw_detections
from leannet.data.images import read_image, write_image
from leannet.errors import LeannetError
from leannet.models import model_config
from leannet.files import atomic_write_json


def detect_image(model: nn.Module, image: torch.Tensor, conf: float = 0.25, iou: float = 0.45
                 ) -> dict[str, torch.Tensor]:
    """Detections on one uint8 image, boxes in that image's own pixels."""
    spec = getattr(model, "detect_spec", None)
    if spec is None:
        raise LeannetError("model is not a YOLO detector (no detect_spec)")
    channels = model_config(model)["input_shape"][0]
    x = to_input(image, spec.image_size, channels).unsqueeze(0)
    model.eval()
    with torch.no_grad():
        found = decode(model(x), spec, conf, iou)[0]
    h, w = image.shape[-2:]
    scale = torch.tensor([w, h, w, h], dtype=torch.float32) / spec.image_size
    return {**found, "boxes": found["boxes"] * scale}


def predict_files(model: nn.Module, images: Sequence[Path], out_dir: Path, conf: float = 0.25,
                  iou: float = 0.45, progress: bool = True) -> list[dict[str, Any]]:
    """Detect, draw and save each image in `out_dir`; write detections.json; return its entries."""

    if not images:
        raise LeannetError("no images given; expected one or more image files")
    loaded = [(path, read_image(path)) for path in images]  # fail before writing anything
    names = list(getattr(model, "detect_spec").class_names)  # noqa: B009 (typed as Any)
    entries: list[dict] = []
    used: set[str] = set()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("predicting", total=len(loaded))
        for path, image in loaded:
            found = detect_image(model, image, conf, iou)
            name = _unique(path.stem, used) + ".png"
            write_image(out_dir / name, draw_detections(image, found, names))
            entries.append({"image": str(path), "output": name, "detections": [
                {"label": int(label), "name": names[label] if label < len(names) else str(label),
                 "score": round(float(score), 4), "box": [round(float(v), 2) for v in box]}
                for box, score, label in zip(found["boxes"], found["scores"],
                                             found["labels"].tolist())]})
            bar.advance(task)
    atomic_write_json(out_dir / "detections.json", {"images": entries})
    return entries


def _unique(stem: str, used: set[str]) -> str:
    """`stem`, or `stem-2`, `stem-3`... when two inputs share a file name."""
    name, index = stem, 1
    while name in used:
        index += 1
        name = f"{stem}-{index}"
    used.add(name)
    return name
