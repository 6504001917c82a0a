"""Box decoding and class-aware NMS as a traceable module, so a deployed detector's file can end
in final detections (boxes, scores, labels) instead of raw head maps decoded in Python.

It computes what `decode` computes for one image, reordered so that no Python branch depends on
the data: `decode` keeps the (box, class) pairs above the confidence threshold and then the top
`pre_nms` of them; taking the top `pre_nms` pairs first and then those above the threshold keeps
the same set (a pair above the threshold that is not among the top `pre_nms` is not kept by
either). The number of candidate pairs is fixed by the image size, so `topk`'s k is a constant in
the exported graph; torchvision's `batched_nms` exports as ONNX NonMaxSuppression.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms, clip_boxes_to_image

from leannet.detect.decode import class_scores, split_level
from leannet.errors import LeannetError
from leannet.models.yolo import DetectSpec

DETECTION_OUTPUTS = ("boxes", "scores", "labels")


class Detections(nn.Module):
    """Raw head maps of one image (in `spec.keys` order) -> boxes (K, 4) xyxy pixels, scores
    (K,), labels (K,) int64, K <= max_detections, best score first."""

    def __init__(self, spec: DetectSpec, conf_threshold: float = 0.25, iou_threshold: float = 0.45,
                 max_detections: int = 100, pre_nms: int = 1000) -> None:
        super().__init__()
        if not 0.0 <= conf_threshold < 1.0 or not 0.0 < iou_threshold <= 1.0:
            raise LeannetError(f"NMS thresholds out of range: conf {conf_threshold}, iou "
                               f"{iou_threshold}; expected 0 <= conf < 1 and 0 < iou <= 1")
        if max_detections < 1 or pre_nms < 1:
            raise LeannetError(f"max detections {max_detections} and pre-NMS candidates "
                               f"{pre_nms} must be at least 1")
        self.spec, self.conf, self.iou = spec, float(conf_threshold), float(iou_threshold)
        self.max_detections, self.pre_nms = int(max_detections), int(pre_nms)

    def forward(self, *maps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        levels = [split_level(raw[:1], self.spec, index) for index, raw in enumerate(maps)]
        boxes = torch.cat([lv.boxes.reshape(-1, 4) for lv in levels])
        scores = torch.cat([class_scores(lv, self.spec.head).reshape(-1, self.spec.num_classes)
                            for lv in levels]).flatten()
        top = scores.topk(min(self.pre_nms, scores.numel()))  # numel is fixed by the image size
        keep = top.values > self.conf
        picked, index = top.values[keep], top.indices[keep]
        size = (self.spec.image_size, self.spec.image_size)
        kept_boxes = clip_boxes_to_image(boxes[index // self.spec.num_classes], size)
        labels = index % self.spec.num_classes
        order = batched_nms(kept_boxes, picked, labels, self.iou)[:self.max_detections]
        return kept_boxes[order], picked[order], labels[order]

