"""Classification as a Task: cross-entropy loss (optionally label-smoothed) and an accuracy meter."""
from __future__ import annotations


import torch
import torch.nn.functional as F

from leannet.errors import LeannetError
from leannet.train.kinds import task_for  # noqa: F401  (the old home of task_for)


class AccuracyMeter:
    """Top-1 accuracy and mean cross-entropy over an evaluation pass."""

    def __init__(self) -> None:
        self.correct = 0
        self.total = 0
        self.loss_sum = 0.0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch of logits (N, K) and integer labels (N,)."""
        logits = outputs.detach().float()
        self.correct += int((logits.argmax(1) == targets).sum())
        self.total += int(targets.numel())
        self.loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))

    def compute(self) -> dict[str, float]:
        """Accuracy in [0, 1] and the mean validation loss."""
        if self.total == 0:
            return {"accuracy": 0.0, "val_loss": float("nan")}
        return {"accuracy": self.correct / self.total, "val_loss": self.loss_sum / self.total}


class ClassificationTask:
    """Cross-entropy (with optional label smoothing) on logits; model selection by accuracy."""

    main_metric = "accuracy"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise LeannetError(f"label smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of a batch."""
        return F.cross_entropy(outputs, targets, label_smoothing=self.label_smoothing)

    def meter(self) -> AccuracyMeter:
        """A fresh accuracy meter."""
        return AccuracyMeter()

