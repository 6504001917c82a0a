"""The three YOLO losses, on raw outputs and targets [{"boxes": xyxy pixels, "labels"}] per image.

v1: the paper's sum-squared loss (lambda_coord on x, y, sqrt w, sqrt h; confidence regressed to
the IoU; lambda_noobj on empty predictors; squared error on the cell's class probabilities).
v2: sigmoid offsets and log sizes against anchor priors, objectness (BCE) and softmax classes.
v3: CIoU box loss, logistic objectness, independent logistic classes over three scales.
All return the total divided by the batch size, plus a dict of the parts.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou, complete_box_iou_loss

from leannet.detect.decode import LevelOutput, level_outputs
from leannet.models.yolo import DetectSpec

Targets = Sequence[Mapping[str, Tensor]]


def yolo_loss(outputs: Mapping[str, Tensor], targets: Targets, spec: DetectSpec,
              **options: Any) -> tuple[Tensor, dict[str, float]]:
    """The loss of the spec's head: (total / batch size, parts); options go to that head's loss."""
    levels = level_outputs(outputs, spec)
    img, labels, boxes = flatten_targets(targets, levels[0].raw.device)
    if spec.head == "v1":
        return v1_loss(levels[0], spec, img, labels, boxes, **options)
    if spec.head == "v2":
        return v2_loss(levels[0], spec, img, labels, boxes, **options)
    return v3_loss(levels, spec, img, labels, boxes, **options)


def flatten_targets(targets: Targets, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Image index, label and xyxy box of every ground-truth box in the batch."""
    img = [torch.full((len(t["labels"]),), i, dtype=torch.long) for i, t in enumerate(targets)]
    labels = [torch.as_tensor(t["labels"]).long().cpu() for t in targets]
    boxes = [torch.as_tensor(t["boxes"]).float().reshape(-1, 4).cpu() for t in targets]
    return (torch.cat(img).to(device), torch.cat(labels).to(device), torch.cat(boxes).to(device))


def paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of a[i] with b[i] (torchvision's box_iou, diagonal)."""
    if len(a) == 0:
        return a.new_zeros(0)
    return box_iou(a, b).diagonal()


def shape_iou(wh: Tensor, anchors: Tensor) -> Tensor:
    """IoU of boxes and anchors aligned at their centres: (M, 2) x (A, 2) -> (M, A)."""
    inter = torch.min(wh[:, None], anchors[None]).prod(-1)
    return inter / (wh.prod(-1)[:, None] + anchors.prod(-1)[None] - inter)


def first_unique(keys: Tensor) -> Tensor:
    """Indices of the first occurrence of each distinct key (one target per predictor)."""
    if len(keys) == 0:
        return keys
    uniq, inverse = torch.unique(keys, return_inverse=True)
    order = torch.arange(len(keys), device=keys.device)
    first = torch.full((len(uniq),), len(keys), device=keys.device, dtype=torch.long)
    return first.scatter_reduce(0, inverse, order, "amin")


def _cells(boxes: Tensor, stride: int, h: int, w: int) -> tuple[Tensor, Tensor, Tensor]:
    """Grid cell (gi, gj) of each box centre, and the centre in grid units."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / stride
    gi = centre[:, 0].long().clamp(0, w - 1)
    gj = centre[:, 1].long().clamp(0, h - 1)
    return gi, gj, centre


def v1_loss(level: LevelOutput, spec: DetectSpec, img: Tensor, labels: Tensor, boxes: Tensor,
            lambda_coord: float = 5.0, lambda_noobj: float = 0.5) -> tuple[Tensor, dict]:
    """YOLOv1 sum-squared loss; the responsible predictor is the cell's box with the best IoU."""
    n, b, h, w, _ = level.raw.shape
    gi, gj, centre = _cells(boxes, level.stride, h, w)
    cand = level.boxes[img, :, gj, gi].detach()  # (M, B, 4)
    ious = torch.stack([paired_iou(cand[:, k], boxes) for k in range(b)], 1) if len(img) else \
        boxes.new_zeros(0, b)
    best = ious.argmax(1)
    keep = first_unique(((img * b + best) * h + gj) * w + gi)
    i, k, j, c = img[keep], best[keep], gj[keep], gi[keep]
    p = level.raw[i, k, j, c]
    txy = centre[keep] - torch.stack([c, j], 1)
    twh = ((boxes[keep, 2:] - boxes[keep, :2]) / spec.image_size).clamp(min=0).sqrt()
    coord = ((p[:, :2].sigmoid() - txy) ** 2).sum() + ((p[:, 2:4].sigmoid() - twh) ** 2).sum()
    conf = level.obj.sigmoid()
    mask = torch.zeros_like(conf, dtype=torch.bool)
    mask[i, k, j, c] = True
    target_conf = ious[keep].gather(1, k[:, None]).squeeze(1)  # the paper's Pr(obj) * IoU
    obj = ((conf[i, k, j, c] - target_conf) ** 2).sum()
    noobj = (conf[~mask] ** 2).sum()
    cell = first_unique((img * h + gj) * w + gi)
    probs = level.cls[img[cell], 0, gj[cell], gi[cell]].softmax(-1)
    cls = ((probs - F.one_hot(labels[cell], spec.num_classes).to(probs.dtype)) ** 2).sum()
    total = (lambda_coord * coord + obj + lambda_noobj * noobj + cls) / n
    return total, _parts(coord=coord / n, obj=obj / n, noobj=noobj / n, cls=cls / n)


def _assign(boxes: Tensor, anchors: Tensor, match_iou: float | None) -> tuple[Tensor, Tensor]:
    """(box, anchor) index pairs: each box's best anchor, plus any with shape IoU > match_iou."""
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6)
    iou = shape_iou(wh, anchors)
    pos = torch.zeros_like(iou, dtype=torch.bool)
    if len(boxes):
        pos[torch.arange(len(boxes), device=boxes.device), iou.argmax(1)] = True
    if match_iou is not None:
        pos |= iou > match_iou
    box_index, anchor_index = pos.nonzero(as_tuple=True)
    return box_index, anchor_index


def _ignore_mask(levels: list[LevelOutput], img: Tensor, boxes: Tensor, threshold: float
                 ) -> list[Tensor]:
    """Per level, predictions whose box overlaps some ground truth of their image by > threshold."""
    masks = []
    with torch.no_grad():
        for lv in levels:
            n = lv.boxes.shape[0]
            flat = lv.boxes.reshape(n, -1, 4)
            mask = torch.zeros(flat.shape[:2], dtype=torch.bool, device=flat.device)
            for i in range(n):
                gt = boxes[img == i]
                if len(gt):
                    mask[i] = box_iou(flat[i], gt).amax(1) > threshold
            masks.append(mask.view(lv.obj.shape))
    return masks


def v2_loss(level: LevelOutput, spec: DetectSpec, img: Tensor, labels: Tensor, boxes: Tensor,
            match_iou: float | None = 0.5, ignore_iou: float = 0.6, lambda_obj: float = 1.0,
            lambda_noobj: float = 1.0) -> tuple[Tensor, dict]:
    """YOLOv2: offsets sigmoid(t) + cell, sizes anchor * exp(t), BCE objectness, softmax classes."""
    n, a, h, w, _ = level.raw.shape
    g, anc = _assign(boxes, level.anchors, match_iou)
    gi, gj, centre = _cells(boxes[g], level.stride, h, w)
    keep = first_unique(((img[g] * a + anc) * h + gj) * w + gi)
    g, anc, gi, gj, centre = g[keep], anc[keep], gi[keep], gj[keep], centre[keep]
    i = img[g]
    p = level.raw[i, anc, gj, gi]
    wh = (boxes[g, 2:] - boxes[g, :2]).clamp(min=1e-6)
    txy = centre - torch.stack([gi, gj], 1)
    twh = (wh / level.anchors[anc]).log()
    scale = 2 - wh.prod(1) / spec.image_size ** 2
    coord = (scale * (((p[:, :2].sigmoid() - txy) ** 2).sum(1)
                      + ((p[:, 2:4] - twh) ** 2).sum(1))).sum()
    pos = torch.zeros_like(level.obj, dtype=torch.bool)
    pos[i, anc, gj, gi] = True
    neg = ~pos & ~_ignore_mask([level], img, boxes, ignore_iou)[0]
    obj = F.binary_cross_entropy_with_logits(level.obj[pos], torch.ones_like(level.obj[pos]),
                                             reduction="sum")
    noobj = F.binary_cross_entropy_with_logits(level.obj[neg], torch.zeros_like(level.obj[neg]),
                                               reduction="sum")
    cls = F.cross_entropy(level.cls[i, anc, gj, gi], labels[g], reduction="sum")
    total = (coord + lambda_obj * obj + lambda_noobj * noobj + cls) / n
    return total, _parts(coord=coord / n, obj=obj / n, noobj=noobj / n, cls=cls / n)


def v3_loss(levels: list[LevelOutput], spec: DetectSpec, img: Tensor, labels: Tensor,
            boxes: Tensor, match_iou: float | None = 0.5, ignore_iou: float = 0.5,
            lambda_box: float = 5.0) -> tuple[Tensor, dict]:
    """YOLOv3: anchors over three scales, CIoU box loss, BCE objectness and per-class BCE."""
    n = levels[0].raw.shape[0]
    all_anchors = torch.cat([lv.anchors for lv in levels])
    per_level = levels[0].anchors.shape[0]
    g_all, anc_all = _assign(boxes, all_anchors, match_iou)
    ignore = _ignore_mask(levels, img, boxes, ignore_iou)
    box_loss = obj_loss = cls_loss = boxes.new_zeros(())
    for index, lv in enumerate(levels):
        _, a, h, w, _ = lv.raw.shape
        on = anc_all // per_level == index
        g, anc = g_all[on], anc_all[on] % per_level
        gi, gj, _ = _cells(boxes[g], lv.stride, h, w)
        keep = first_unique(((img[g] * a + anc) * h + gj) * w + gi)
        g, anc, gi, gj = g[keep], anc[keep], gi[keep], gj[keep]
        i = img[g]
        if len(g):
            box_loss = box_loss + complete_box_iou_loss(lv.boxes[i, anc, gj, gi], boxes[g],
                                                        reduction="sum")
            onehot = F.one_hot(labels[g], spec.num_classes).to(lv.cls.dtype)
            cls_loss = cls_loss + F.binary_cross_entropy_with_logits(
                lv.cls[i, anc, gj, gi], onehot, reduction="sum")
        target = torch.zeros_like(lv.obj)
        target[i, anc, gj, gi] = 1.0
        weight = ((target > 0) | ~ignore[index]).to(lv.obj.dtype)
        obj_loss = obj_loss + F.binary_cross_entropy_with_logits(lv.obj, target, weight,
                                                                 reduction="sum")
    total = (lambda_box * box_loss + obj_loss + cls_loss) / n
    return total, _parts(box=box_loss / n, obj=obj_loss / n, cls=cls_loss / n)


def _parts(**parts: Tensor) -> dict[str, float]:
    """Loss parts as plain floats for logging."""
    return {key: float(value.detach()) for key, value in parts.items()}
