"""COCO mAP@0.5 and mAP@0.5:0.95 of detections, computed by pycocotools (or faster-coco-eval).

Predictions and targets are lists (one entry per image) of {"boxes": xyxy, "scores", "labels"}
and {"boxes": xyxy, "labels"}. Classes without any ground truth are left out of the mean, as
COCO does.
"""
from __future__ import annotations

import contextlib
import io
from typing import Any, Mapping, Sequence

import torch
from pycocotools.coco import COCO as PyCOCO
from pycocotools.cocoeval import COCOeval as PyCOCOeval

from leannet.errors import LeannetError

try:  # optional cross-check backend (in the `test` and `bench` extras)
    from faster_coco_eval import COCO as FastCOCO
    from faster_coco_eval import COCOeval_faster as FastCOCOeval
except ImportError:  # pragma: no cover - depends on the install
    FastCOCO = FastCOCOeval = None

BACKENDS = ("pycocotools", "faster_coco_eval")


def _xywh(boxes: Any) -> list[list[float]]:
    """xyxy -> COCO's [x, y, width, height]."""
    b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    return torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], 1).tolist()


def coco_dicts(predictions: Sequence[Mapping], targets: Sequence[Mapping], num_classes: int
               ) -> tuple[dict, list[dict]]:
    """Ground truth as a COCO dataset dict and predictions as a COCO results list."""
    images: list[dict] = []
    annotations: list[dict] = []
    results: list[dict] = []
    for image_id, (pred, target) in enumerate(zip(predictions, targets)):
        images.append({"id": image_id})
        for box, label in zip(_xywh(target["boxes"]), torch.as_tensor(target["labels"]).tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "bbox": box,
                                "category_id": int(label), "area": box[2] * box[3],
                                "iscrowd": 0})
        for box, score, label in zip(_xywh(pred["boxes"]), torch.as_tensor(pred["scores"]).tolist(),
                                     torch.as_tensor(pred["labels"]).tolist()):
            results.append({"image_id": image_id, "bbox": box, "score": float(score),
                            "category_id": int(label)})
    categories = [{"id": c, "name": str(c)} for c in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def mean_average_precision(predictions: Sequence[Mapping], targets: Sequence[Mapping],
                           num_classes: int, backend: str = "pycocotools") -> dict[str, float]:
    """{"map50": mAP@0.5, "map": mAP@0.5:0.95}; 0.0 when there are no detections or no boxes."""
    if backend not in BACKENDS:
        raise LeannetError(f"unknown mAP backend {backend!r}; expected one of {BACKENDS}")
    if len(predictions) != len(targets):
        raise LeannetError(f"{len(predictions)} predictions for {len(targets)} images")
    dataset, results = coco_dicts(predictions, targets, num_classes)
    if not results or not dataset["annotations"]:
        return {"map50": 0.0, "map": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        stats = _evaluate(dataset, results, backend)
    return {"map50": max(0.0, float(stats[1])), "map": max(0.0, float(stats[0]))}


def _evaluate(dataset: dict, results: list[dict], backend: str) -> list[float]:
    """Run COCOeval on bounding boxes and return its 12 summary numbers."""
    if backend == "pycocotools":
        COCO, COCOeval = PyCOCO, PyCOCOeval
    elif FastCOCO is None:
        raise LeannetError("the faster_coco_eval backend is not installed; "
                           "pip install faster-coco-eval, or use pycocotools")
    else:
        COCO, COCOeval = FastCOCO, FastCOCOeval
    gt = COCO()
    gt.dataset = dataset
    gt.createIndex()
    dt = gt.loadRes(results)
    evaluator = COCOeval(gt, dt, "bbox")
    evaluator.params.maxDets = [1, 10, 100]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return list(evaluator.stats)
