"""The Task protocol: what the fit/evaluate loop needs from classification, multi-task, detection."""
from __future__ import annotations

from typing import Any, Protocol

import torch


class Meter(Protocol):
    """Accumulates predictions over an evaluation pass."""

    def update(self, outputs: Any, targets: Any) -> None: ...

    def compute(self) -> dict[str, float]: ...


class Task(Protocol):
    """Loss + metrics for one kind of output.

    `main_metric` names the key of `compute()` that model selection and pruning guards watch
    (higher is better). A task that is an `nn.Module` may carry learnable parameters (uncertainty
    weighting), which the fit loop optimises with the model. `on_epoch_end(history)` lets a task
    adapt between epochs (dynamic weight averaging).
    """

    main_metric: str

    def loss(self, outputs: Any, targets: Any) -> torch.Tensor: ...

    def meter(self) -> Meter: ...
