"""The Task of each head kind of a `multi_head` model: its loss, its meter, its main metric.

classify: cross-entropy, accuracy. multilabel: binary cross-entropy, label mAP. segment:
per-pixel cross-entropy (ignoring 255), mIoU and pixel accuracy. detect: the YOLOv3 loss and
COCO mAP of `leannet.detect` on the head's levels. A user's head kind brings its own task: a
head module with a `make_task()` method is trained and evaluated by what that returns.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leannet.detect.task import DetectionTask
from leannet.errors import LeannetError
from leannet.models.heads import DetectHead
from leannet.models.yolo import DetectSpec
from leannet.multitask.metrics import (IGNORE_INDEX, confusion_matrix, multilabel_scores,
                                       segmentation_scores)
from leannet.train.tasks import ClassificationTask


class SegmentationTask:
    """Per-pixel cross-entropy; a confusion-matrix meter giving mIoU (main) and pixel accuracy."""

    main_metric = "miou"

    def __init__(self, classes: int) -> None:
        self.classes = int(classes)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets.long(), ignore_index=IGNORE_INDEX)

    def meter(self) -> "SegmentationMeter":
        return SegmentationMeter(self.classes)


class SegmentationMeter:
    def __init__(self, classes: int) -> None:
        self.matrix = torch.zeros(classes, classes, dtype=torch.long)
        self.classes = classes

    def update(self, outputs: Tensor, targets: Tensor) -> None:
        self.matrix += confusion_matrix(outputs.argmax(1).cpu(), targets.cpu(), self.classes)

    def compute(self) -> dict[str, float]:
        return segmentation_scores(self.matrix)


class MultiLabelTask:
    """Independent sigmoid per label: binary cross-entropy; label mAP (main) and accuracy."""

    main_metric = "label_map"

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(outputs, targets.to(outputs.dtype))

    def meter(self) -> "MultiLabelMeter":
        return MultiLabelMeter()


class MultiLabelMeter:
    def __init__(self) -> None:
        self.scores: list[Tensor] = []
        self.truth: list[Tensor] = []

    def update(self, outputs: Tensor, targets: Tensor) -> None:
        self.scores.append(outputs.detach().float().cpu())
        self.truth.append(targets.detach().float().cpu())

    def compute(self) -> dict[str, float]:
        if not self.scores:
            return {"label_map": 0.0, "label_accuracy": 0.0}
        return multilabel_scores(torch.cat(self.scores), torch.cat(self.truth))


class DetectHeadTask:
    """DetectionTask on a detect head's flat output (split back into its levels)."""

    main_metric = "map50"

    def __init__(self, spec: DetectSpec) -> None:
        self.spec = spec
        self.detection = DetectionTask(spec)

    def loss(self, outputs: Tensor, targets: Sequence[Mapping[str, Tensor]]) -> Tensor:
        return self.detection.loss(DetectHead.split(outputs, self.spec), targets)

    def meter(self) -> "DetectHeadMeter":
        return DetectHeadMeter(self)


class DetectHeadMeter:
    def __init__(self, task: DetectHeadTask) -> None:
        self.task = task
        self.inner = task.detection.meter()

    def update(self, outputs: Tensor, targets: Sequence[Mapping[str, Any]]) -> None:
        self.inner.update(DetectHead.split(outputs, self.task.spec), targets)

    def compute(self) -> dict[str, float]:
        return self.inner.compute()


def head_task(head: nn.Module, spec: dict[str, Any]) -> Any:
    """The Task that trains and scores `head` (built from `spec`)."""
    own = getattr(head, "make_task", None)
    if callable(own):
        return own()
    kind = spec.get("kind")
    if kind == "classify":
        return ClassificationTask()
    if kind == "multilabel":
        return MultiLabelTask()
    if kind == "segment":
        return SegmentationTask(int(spec["classes"]))
    if kind == "detect":
        return DetectHeadTask(getattr(head, "detect_spec"))  # noqa: B009 (typed as Any)
    raise LeannetError(f"head kind {kind!r} has no task; give its head module a make_task() "
                       "method returning a Task (loss, meter, main_metric)")


def head_tasks(model: nn.Module) -> dict[str, Any]:
    """{task: Task} for every head of a multi_head model."""
    specs = getattr(model, "head_specs", None)
    if not specs:
        raise LeannetError("model is not a multi-head model (it has no head specs)")
    heads: Any = model.heads
    return {name: head_task(heads[name], spec) for name, spec in specs.items()}
