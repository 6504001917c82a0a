"""Anchor priors by k-means on box sizes with distance 1 - IoU (YOLO9000, section 2).

Boxes are compared by shape only (centres aligned), so large boxes don't dominate as they would
with Euclidean distance. The mean IoU of each box with its nearest anchor says how good they are.
"""
from __future__ import annotations

import torch
from torch import Tensor

from leannet.errors import LeannetError


def wh_iou(wh: Tensor, anchors: Tensor) -> Tensor:
    """IoU of (M, 2) sizes with (K, 2) anchors, centres aligned -> (M, K)."""
    inter = torch.min(wh[:, None], anchors[None]).prod(-1)
    return inter / (wh.prod(-1)[:, None] + anchors.prod(-1)[None] - inter)


def mean_iou(wh: Tensor, anchors: Tensor) -> float:
    """Average over boxes of the IoU with their best anchor."""
    return float(wh_iou(wh.float(), anchors.float()).amax(1).mean())


def kmeans_anchors(wh: Tensor, k: int, seed: int = 0, iterations: int = 300
                   ) -> tuple[Tensor, float]:
    """k anchors (K, 2) sorted by area, and the mean IoU they reach, from box sizes (M, 2)."""
    wh = torch.as_tensor(wh, dtype=torch.float64).reshape(-1, 2)
    wh = wh[(wh > 0).all(1)]
    if k < 1:
        raise LeannetError(f"k must be at least 1, got {k}")
    if len(wh) < k:
        raise LeannetError(f"k-means needs at least k={k} boxes, got {len(wh)}")
    generator = torch.Generator().manual_seed(seed)
    centres = _plus_plus_init(wh, k, generator)
    for _ in range(iterations):
        nearest = wh_iou(wh, centres).argmax(1)
        updated = torch.stack([wh[nearest == j].median(0).values if (nearest == j).any()
                               else centres[j] for j in range(k)])
        if torch.allclose(updated, centres):
            break
        centres = updated
    centres = centres[centres.prod(1).argsort()]
    return centres.float(), mean_iou(wh, centres)


def _plus_plus_init(wh: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding with distance 1 - IoU: spread-out first centres."""
    first = torch.randint(len(wh), (1,), generator=generator)
    centres = wh[first]
    while len(centres) < k:
        distance = (1 - wh_iou(wh, centres).amax(1)).clamp(min=0)
        weights = distance if distance.sum() > 0 else torch.ones_like(distance)
        pick = torch.multinomial(weights, 1, generator=generator)
        centres = torch.cat([centres, wh[pick]])
    return centres
