"""Per-task metrics beside detection's COCO mAP: mIoU and pixel accuracy, multi-label mAP.

A small implementation rather than torchmetrics: a confusion matrix is ten lines, and the
dependency (plus its lightning-utilities) would be the only reason to install it. Conventions
follow torchmetrics / the VOC and Cityscapes benchmarks: IoU per class = TP / (TP + FP + FN) over
the whole pass, mean over classes that occur in the prediction or the ground truth; pixels
labelled `ignore_index` count nowhere. Multi-label mAP is the mean over labels with at least one
positive of the average precision (area under the step precision-recall curve, as scikit-learn).
"""
from __future__ import annotations

import torch
from torch import Tensor

IGNORE_INDEX = 255


def confusion_matrix(pred: Tensor, target: Tensor, classes: int,
                     ignore_index: int = IGNORE_INDEX) -> Tensor:
    """(classes, classes) int64 counts, rows = true class, columns = predicted class."""
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = (target != ignore_index) & (target >= 0) & (target < classes)
    index = target[keep] * classes + pred[keep].clamp(0, classes - 1)
    return torch.bincount(index, minlength=classes * classes).reshape(classes, classes)


def segmentation_scores(matrix: Tensor) -> dict[str, float]:
    """mIoU (over classes present in truth or prediction) and pixel accuracy of a confusion matrix."""
    matrix = matrix.double()
    tp = matrix.diag()
    union = matrix.sum(0) + matrix.sum(1) - tp
    present = union > 0
    miou = float((tp[present] / union[present]).mean()) if present.any() else 0.0
    total = float(matrix.sum())
    return {"miou": miou, "pixel_accuracy": float(tp.sum()) / total if total else 0.0}


def average_precision(scores: Tensor, truth: Tensor) -> float:
    """AP of one label: sum over positives, in score order, of precision at each (ties broken
    by order); NaN when the label has no positive."""
    truth = truth.reshape(-1).double()
    positives = float(truth.sum())
    if positives == 0:
        return float("nan")
    order = torch.argsort(scores.reshape(-1), descending=True, stable=True)
    hits = truth[order]
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1, dtype=torch.float64)
    return float((precision * hits).sum() / positives)


def multilabel_scores(scores: Tensor, truth: Tensor) -> dict[str, float]:
    """Label mAP (labels with a positive) and the share of label decisions right at p = 0.5."""
    aps = [average_precision(scores[:, k], truth[:, k]) for k in range(scores.shape[1])]
    valid = [a for a in aps if a == a]
    decisions = ((scores > 0).double() == truth.double()).double()
    return {"label_map": sum(valid) / len(valid) if valid else 0.0,
            "label_accuracy": float(decisions.mean()) if decisions.numel() else 0.0}
