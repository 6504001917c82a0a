"""Boxes drawn on images (labelled "name score") and semantic masks blended over them."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
            "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3"]


def draw_detections(image: Tensor, detections: Mapping[str, Tensor],
                    class_names: Sequence[str] = (), width: int = 2) -> Tensor:
    """A uint8 (3, H, W) copy of `image` (uint8, 1 or 3 channels) with each detection drawn."""
    if image.dtype != torch.uint8:
        raise ValueError("draw_detections expects a uint8 image")
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    labels = detections["labels"].tolist()
    scores = detections.get("scores")
    text = []
    for index, label in enumerate(labels):
        name = class_names[label] if label < len(class_names) else str(label)
        text.append(name if scores is None else f"{name} {float(scores[index]):.2f}")
    colors = [_PALETTE[label % len(_PALETTE)] for label in labels]
    return draw_bounding_boxes(image.contiguous(), detections["boxes"].float(), text or None,
                               colors=colors or None, width=width)


def draw_mask(image: Tensor, mask: Tensor, classes: int, alpha: float = 0.45) -> Tensor:
    """A uint8 (3, H, W) copy of `image` with each non-background class of the (H, W) `mask`
    (0 = background) blended in its palette colour."""
    if image.dtype != torch.uint8:
        raise ValueError("draw_mask expects a uint8 image")
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    present = [c for c in range(1, classes) if bool((mask == c).any())]
    if not present:
        return image.contiguous().clone()
    masks = torch.stack([mask == c for c in present])
    colors = [_PALETTE[(c - 1) % len(_PALETTE)] for c in present]
    return draw_segmentation_masks(image.contiguous(), masks, alpha=alpha, colors=colors)
