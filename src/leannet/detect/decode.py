"""Raw YOLO outputs -> boxes: per-level layout, box decoding, score threshold, class-aware NMS.

Layouts (per cell): v1 has B boxes of (x, y, sqrt w, sqrt h, conf) then C class scores shared by
the cell; v2/v3 have per anchor (tx, ty, tw, th, objectness, C class scores).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image

from leannet.models.yolo import DetectSpec

MAX_LOG_SIZE = 6.0  # clamp exp() inputs so one bad logit can't make an infinite box


@dataclass
class LevelOutput:
    """One level's predictions as (N, A, H, W, k) tensors; `boxes` are xyxy pixels."""

    raw: Tensor      # (N, A, H, W, 5) box part; v2/v3 also carry classes after index 5
    boxes: Tensor    # (N, A, H, W, 4)
    obj: Tensor      # (N, A, H, W) logits
    cls: Tensor      # (N, A, H, W, C) logits (v1: the cell's logits repeated over A)
    stride: int
    anchors: Tensor  # (A, 2) pixels; v1: empty


def level_outputs(outputs: Mapping[str, Tensor], spec: DetectSpec) -> list[LevelOutput]:
    """Split and decode every level of a model's raw output dict."""
    return [split_level(outputs[key], spec, index) for index, key in enumerate(spec.keys)]


def split_level(raw: Tensor, spec: DetectSpec, level: int) -> LevelOutput:
    """Reshape one raw (N, ch, H, W) map and decode its boxes to pixels."""
    n, _, h, w = raw.shape
    a, c = spec.boxes_per_cell, spec.num_classes
    stride = spec.image_size / w
    grid_y, grid_x = torch.meshgrid(torch.arange(h, device=raw.device),
                                    torch.arange(w, device=raw.device), indexing="ij")
    grid = torch.stack([grid_x, grid_y], -1).to(raw.dtype)  # (H, W, 2)
    if spec.head == "v1":
        box = raw[:, :a * 5].reshape(n, a, 5, h, w).permute(0, 1, 3, 4, 2)
        cls = raw[:, a * 5:].permute(0, 2, 3, 1).unsqueeze(1).expand(n, a, h, w, c)
        xy = (box[..., :2].sigmoid() + grid) * stride
        wh = box[..., 2:4].sigmoid().square() * spec.image_size
        anchors = raw.new_zeros(0, 2)
    else:
        box = raw.reshape(n, a, 5 + c, h, w).permute(0, 1, 3, 4, 2)
        cls = box[..., 5:]
        anchors = raw.new_tensor(spec.anchors[level])
        xy = (box[..., :2].sigmoid() + grid) * stride
        wh = box[..., 2:4].clamp(max=MAX_LOG_SIZE).exp() * anchors.view(1, a, 1, 1, 2)
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], -1)
    return LevelOutput(box, boxes, box[..., 4], cls, int(round(float(stride))), anchors)


def class_scores(level: LevelOutput, head: str) -> Tensor:
    """Per (box, class) scores: conf x P(class) (v1, v2 softmax) or obj x sigmoid(class) (v3)."""
    probs = level.cls.sigmoid() if head == "v3" else level.cls.softmax(-1)
    return level.obj.sigmoid().unsqueeze(-1) * probs


@torch.no_grad()
def decode(outputs: Mapping[str, Tensor], spec: DetectSpec, conf_threshold: float = 0.25,
           iou_threshold: float = 0.45, max_detections: int = 100, pre_nms: int = 1000
           ) -> list[dict[str, Tensor]]:
    """Detections per image: {"boxes" xyxy pixels, "scores", "labels"} after class-aware NMS."""
    levels = level_outputs(outputs, spec)
    n = levels[0].boxes.shape[0]
    boxes = torch.cat([lv.boxes.reshape(n, -1, 4) for lv in levels], 1)
    scores = torch.cat([class_scores(lv, spec.head).reshape(n, -1, spec.num_classes)
                        for lv in levels], 1)
    size = (spec.image_size, spec.image_size)
    return [_select(boxes[i], scores[i], size, conf_threshold, iou_threshold, max_detections,
                    pre_nms) for i in range(n)]


def _select(boxes: Tensor, scores: Tensor, size: tuple[int, int], conf_threshold: float,
            iou_threshold: float, max_detections: int, pre_nms: int) -> dict[str, Tensor]:
    """Every (box, class) pair above the threshold, top `pre_nms`, then NMS per class."""
    box_index, labels = (scores > conf_threshold).nonzero(as_tuple=True)
    picked = scores[box_index, labels]
    if picked.numel() > pre_nms:
        top = picked.topk(pre_nms).indices
        box_index, labels, picked = box_index[top], labels[top], picked[top]
    kept_boxes = clip_boxes_to_image(boxes[box_index], size)
    keep = batched_nms(kept_boxes, picked, labels, iou_threshold)[:max_detections]
    return {"boxes": kept_boxes[keep].float(), "scores": picked[keep].float(),
            "labels": labels[keep].long()}
