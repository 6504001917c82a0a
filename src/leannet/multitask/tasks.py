"""`MultiTask`: the Task protocol over dict outputs and dict targets, one sub-task per name.

Each sub-task (classification by default) gives its own loss and metrics, logged as `left/loss`,
`left/accuracy`, ...; the losses combine through a weighting scheme; `main_metric` is the mean
of the sub-tasks' main metrics (`mean_accuracy` for classification), which model selection and
pruning guards watch.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from leannet.errors import LeannetError
from leannet.nn.sharing import check_task_names
from leannet.multitask.weighting import Weighting, make_weighting
from leannet.train.tasks import ClassificationTask


class MultiTask(nn.Module):
    """Loss and metrics for a model returning {task: output}, with targets {task: target}.

    Targets may hold more tasks than the model (a single-task model on multi-task data): only
    the model's tasks are used. The module carries the weighting's learnable parameters.
    """

    def __init__(self, tasks: list[str] | dict[str, Any], weighting: str | Weighting = "fixed",
                 weights: dict[str, float] | None = None,
                 subtasks: dict[str, Any] | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.tasks = check_task_names(tasks, "MultiTask")
        subtasks = dict(subtasks or {})
        unknown = [k for k in subtasks if k not in self.tasks]
        if unknown:
            raise LeannetError(f"sub-tasks {unknown} are not tasks of the model ({self.tasks})")
        self.subtasks = {t: subtasks.get(t) or ClassificationTask(label_smoothing) for t in self.tasks}
        self.weighting = (weighting if isinstance(weighting, Weighting)
                          else make_weighting(weighting, self.tasks, weights))
        metrics = {s.main_metric for s in self.subtasks.values()}
        self.main_metric = f"mean_{metrics.pop()}" if len(metrics) == 1 else "mean_metric"
        self._epoch_sums: dict[str, Tensor | float] = {t: 0.0 for t in self.tasks}
        self._epoch_batches = 0
        self._last_losses: dict[str, Tensor] | None = None

    def task_losses(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each task's own loss."""
        _check_dicts(outputs, targets, self.tasks)
        return {t: self.subtasks[t].loss(outputs[t], targets[t]) for t in self.tasks}

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        """The weighted sum of task losses; training-time calls feed DWA's epoch means."""
        losses = self.task_losses(outputs, targets)
        if torch.is_grad_enabled():
            for t, value in losses.items():  # summed as tensors: no device sync per step
                self._epoch_sums[t] = self._epoch_sums[t] + value.detach()
            self._epoch_batches += 1
            self._last_losses = losses
        return self.weighting(losses)

    def backward(self, loss: Tensor, model: nn.Module) -> None:
        """The fit loop's backward pass: the weighting's own (gradient methods, GradNorm need
        per-task gradients of the shared parameters), else `loss.backward()`."""
        losses, self._last_losses = self._last_losses, None
        if losses is None:
            loss.backward()
            return
        model = getattr(model, "module", model)  # DistributedDataParallel or torch.compile
        model = getattr(model, "_orig_mod", model)
        shared = getattr(model, "shared_parameters", None)
        params = list(shared()) if callable(shared) else []
        if not params and type(self.weighting).backward is not Weighting.backward:
            raise LeannetError(f"loss weighting {type(self.weighting).__name__} needs a model "
                               "with shared parameters (hard sharing or a multi-head model)")
        self.weighting.backward(losses, loss, params)

    @property
    def label_smoothing(self) -> float:
        """Label smoothing of the classification sub-tasks (fit may override it)."""
        values = [getattr(s, "label_smoothing", 0.0) for s in self.subtasks.values()]
        return float(values[0]) if values else 0.0

    @label_smoothing.setter
    def label_smoothing(self, value: float) -> None:
        for sub in self.subtasks.values():
            if hasattr(sub, "label_smoothing"):
                sub.label_smoothing = float(value)

    def on_epoch_end(self, history: list[dict] | None = None) -> None:
        """Log the epoch's per-task training losses and weights in `history[-1]`, adapt, reset."""
        if self._epoch_batches:
            means = {t: float(s) / self._epoch_batches for t, s in self._epoch_sums.items()}
            if history:
                weights = self.weighting.weights()
                history[-1].update({f"{t}/train_loss": means[t] for t in self.tasks})
                history[-1].update({f"{t}/weight": weights[t] for t in self.tasks})
            self.weighting.on_epoch_end(means)
        self._epoch_sums = {t: 0.0 for t in self.tasks}
        self._epoch_batches = 0

    def current_weights(self) -> dict[str, float]:
        """The weight of each task loss now (for logging)."""
        return self.weighting.weights()

    def meter(self) -> "MultiMeter":
        return MultiMeter(self)


class MultiMeter:
    """Per-task meters plus each task's mean loss; `compute()` adds the mean of main metrics."""

    def __init__(self, task: MultiTask) -> None:
        self.task = task
        self.meters = {t: s.meter() for t, s in task.subtasks.items()}
        self.loss_sums = {t: 0.0 for t in task.tasks}
        self.count = 0

    @torch.no_grad()
    def update(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> None:
        losses = self.task.task_losses(outputs, targets)
        n = len(next(iter(targets.values())))
        for t in self.task.tasks:
            self.meters[t].update(outputs[t], targets[t])
            self.loss_sums[t] += float(losses[t]) * n
        self.count += n

    def compute(self) -> dict[str, float]:
        result: dict[str, float] = {}
        mains = []
        for t in self.task.tasks:
            values = dict(self.meters[t].compute())
            values.pop("val_loss", None)  # logged as `task/loss` below
            values["loss"] = self.loss_sums[t] / max(self.count, 1)
            result.update({f"{t}/{k}": float(v) for k, v in values.items()})
            mains.append(float(values[self.task.subtasks[t].main_metric]))
        result["val_loss"] = sum(result[f"{t}/loss"] for t in self.task.tasks)
        result[self.task.main_metric] = sum(mains) / len(mains)
        return result


def _check_dicts(outputs: Any, targets: Any, tasks: list[str]) -> None:
    """Outputs and targets must be dicts holding every task of the model."""
    if not isinstance(outputs, dict) or not isinstance(targets, dict):
        raise LeannetError("a multi-task model needs dict outputs and dict targets "
                           f"(got {type(outputs).__name__} and {type(targets).__name__})")
    for where, d in (("outputs", outputs), ("targets", targets)):
        missing = [t for t in tasks if t not in d]
        if missing:
            raise LeannetError(f"{where} lack task(s) {missing}; have {sorted(d)}")
