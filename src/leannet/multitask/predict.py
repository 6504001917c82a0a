"""Run a saved multi-head model on image files: boxes and a mask overlay drawn, labels listed.

Used by `leannet predict` for multi-head models: each image is written once as `<stem>.png`
with every detect head's boxes and every segment head's mask drawn on it, and
`predictions.json` lists per image and task the boxes, the mask's class areas, and the labels
(classify: the top class and its probability; multilabel: every label above 0.5).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from leannet.data.box_augment import to_input
from leannet.data.images import read_image, write_image
from leannet.detect.decode import decode
from leannet.detect.draw import draw_detections, draw_mask
from leannet.errors import LeannetError
from leannet.files import atomic_write_json
from leannet.models import model_config
from leannet.models.heads import DetectHead


def _names(spec: dict[str, Any]) -> list[str]:
    return [str(n) for n in spec.get("class_names") or range(int(spec.get("classes", 0)))]


def predict_image(model: nn.Module, image: torch.Tensor, conf: float = 0.25, iou: float = 0.45
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
    """(the drawn uint8 image, {task: prediction}) for one uint8 image at its own size."""
    specs = getattr(model, "head_specs", None)
    if not specs:
        raise LeannetError("model is not a multi-head model (no head specs)")
    channels, size, _ = model_config(model)["input_shape"]
    x = to_input(image, size, channels).unsqueeze(0)
    model.eval()
    with torch.no_grad():
        outputs = model(x)
    h, w = image.shape[-2:]
    drawn = image if image.shape[0] == 3 else image[:1].expand(3, -1, -1)
    found: dict[str, Any] = {}
    for task, spec in specs.items():
        out, names = outputs[task], _names(spec)
        if spec["kind"] == "segment":
            logits = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
            mask = logits.argmax(1)[0]
            drawn = draw_mask(drawn, mask, int(spec["classes"]))
            areas = torch.bincount(mask.reshape(-1), minlength=int(spec["classes"]))
            found[task] = {names[c] if c < len(names) else str(c): int(a)
                           for c, a in enumerate(areas.tolist()) if a and c}
        elif spec["kind"] == "detect":
            head_spec = getattr(model, "heads")[task].detect_spec  # noqa: B009 (typed as Any)
            boxes = decode(DetectHead.split(out, head_spec), head_spec, conf, iou)[0]
            scale = torch.tensor([w, h, w, h], dtype=torch.float32) / size
            boxes = {**boxes, "boxes": boxes["boxes"] * scale}
            drawn = draw_detections(drawn, boxes, names)
            found[task] = [{"label": int(label), "name": names[label] if label < len(names)
                            else str(label), "score": round(float(score), 4),
                            "box": [round(float(v), 2) for v in box]}
                           for box, score, label in zip(boxes["boxes"], boxes["scores"],
                                                        boxes["labels"].tolist())]
        elif spec["kind"] == "multilabel":
            probs = out[0].sigmoid().tolist()
            found[task] = [{"label": k, "name": names[k] if k < len(names) else str(k),
                            "score": round(p, 4)} for k, p in enumerate(probs) if p > 0.5]
        else:
            probs = out[0].float().softmax(0)
            top = int(probs.argmax())
            found[task] = {"label": top, "name": names[top] if top < len(names) else str(top),
                           "score": round(float(probs[top]), 4)}
    return drawn, found


def predict_files(model: nn.Module, images: Sequence[Path], out_dir: Path, conf: float = 0.25,
                  iou: float = 0.45) -> list[dict[str, Any]]:
    """Predict, draw and save each image in `out_dir`; write predictions.json; return entries."""
    if not images:
        raise LeannetError("no images given; expected one or more image files")
    loaded = [(path, read_image(path)) for path in images]  # fail before writing anything
    entries: list[dict[str, Any]] = []
    used: set[str] = set()
    for path, image in loaded:
        drawn, found = predict_image(model, image, conf, iou)
        stem, index = path.stem, 1
        while stem in used:
            index += 1
            stem = f"{path.stem}-{index}"
        used.add(stem)
        write_image(out_dir / f"{stem}.png", drawn)
        entries.append({"image": str(path), "output": f"{stem}.png", "tasks": found})
    atomic_write_json(out_dir / "predictions.json", {"images": entries})
    return entries
