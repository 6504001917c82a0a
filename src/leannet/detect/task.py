"""DetectionTask: the Task protocol for YOLO models (loss by head, mAP meter; main metric map50).

With a digit-count head (`count_classes` > 0) the task adds a cross-entropy on how many boxes each
image holds, and the meter reports its accuracy next to mAP.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from leannet.detect.decode import decode
from leannet.detect.losses import yolo_loss
from leannet.detect.metrics import mean_average_precision
from leannet.models.yolo import DetectSpec


def count_targets(targets: Sequence[Mapping[str, Tensor]], count_classes: int,
                  device: torch.device) -> Tensor:
    """How many boxes each image has, capped at the count head's last class."""
    counts = torch.tensor([len(t["labels"]) for t in targets], device=device)
    return counts.clamp(max=count_classes - 1)


class DetectionTask:
    """YOLO loss for the spec's head (+ count cross-entropy) and a COCO-mAP meter."""

    main_metric = "map50"

    def __init__(self, spec: DetectSpec, count_weight: float = 1.0, conf_threshold: float = 0.01,
                 iou_threshold: float = 0.5, loss_options: dict | None = None) -> None:
        self.spec = spec
        self.loss_options = dict(loss_options or {})
        self.count_weight = count_weight
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold

    def loss(self, outputs: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]]
             ) -> Tensor:
        total, _ = yolo_loss(outputs, targets, self.spec, **self.loss_options)
        if self.spec.count_classes and "count" in outputs:
            logits = outputs["count"]
            count = F.cross_entropy(logits, count_targets(targets, self.spec.count_classes,
                                                          logits.device))
            total = total + self.count_weight * count
        return total

    def meter(self) -> "DetectionMeter":
        return DetectionMeter(self)


class DetectionMeter:
    """Collects decoded detections and targets over a pass; computes mAP (and count accuracy)."""

    def __init__(self, task: DetectionTask) -> None:
        self.task = task
        self.predictions: list[dict[str, Tensor]] = []
        self.targets: list[dict[str, Tensor]] = []
        self.count_correct = 0

    def update(self, outputs: Mapping[str, Tensor], targets: Sequence[Mapping[str, Any]]) -> None:
        spec = self.task.spec
        detections = decode(outputs, spec, self.task.conf_threshold, self.task.iou_threshold)
        self.predictions += [{k: v.cpu() for k, v in d.items()} for d in detections]
        self.targets += [{"boxes": torch.as_tensor(t["boxes"]).cpu(),
                          "labels": torch.as_tensor(t["labels"]).cpu()} for t in targets]
        if spec.count_classes and "count" in outputs:
            guess = outputs["count"].argmax(1).cpu()
            truth = count_targets(targets, spec.count_classes, torch.device("cpu"))
            self.count_correct += int((guess == truth).sum())

    def compute(self) -> dict[str, float]:
        result = mean_average_precision(self.predictions, self.targets, self.task.spec.num_classes)
        if self.task.spec.count_classes:
            result["count_accuracy"] = self.count_correct / max(1, len(self.targets))
        return result
