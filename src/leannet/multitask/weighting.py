"""How task losses combine into one: fixed weights, uncertainty weighting, dynamic weight averaging.

- fixed: sum of w_t * L_t (weights default to 1).
- uncertainty (Kendall, Gal & Cipolla 2018): learned s_t = log sigma_t^2 per task,
  L = sum 0.5 * exp(-s_t) * L_t + 0.5 * s_t; at the optimum sigma_t^2 equals the task loss.
- dwa (Liu, Johns & Davison 2019): w_t = T * softmax_t(r_t / temperature), r_t = L_t(e-1) / L_t(e-2)
  from the mean training losses of the last two epochs; weights are 1 for the first two epochs.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from leannet.errors import LeannetError

WEIGHTINGS = ("fixed", "uncertainty", "dwa")


def check_weights(weights: dict[str, float] | None, tasks: list[str], what: str) -> dict[str, float]:
    """Validate a {task: number} mapping against the model's tasks; missing tasks get 1.0."""
    weights = dict(weights or {})
    unknown = [k for k in weights if k not in tasks]
    if unknown:
        raise LeannetError(f"{what} names task(s) {', '.join(map(repr, unknown))} that the model "
                           f"does not have; its tasks are {', '.join(tasks)}")
    for key, value in weights.items():
        if not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
            raise LeannetError(f"{what} for task {key!r} must be a finite number >= 0, got {value!r}")
    return {t: float(weights.get(t, 1.0)) for t in tasks}


class Weighting(nn.Module):
    """Base: `forward(losses)` -> combined loss; `weights()` -> current weights for logging."""

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        self.tasks = list(tasks)

    def weights(self) -> dict[str, float]:
        """The weight each task loss gets now."""
        raise NotImplementedError

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        w = self.weights()
        return torch.stack([w[t] * losses[t] for t in self.tasks]).sum()

    def on_epoch_end(self, epoch_losses: dict[str, float]) -> None:
        """Receive the epoch's mean training loss per task (DWA adapts; others ignore it)."""


class FixedWeighting(Weighting):
    """A constant weight per task (1.0 by default)."""

    def __init__(self, tasks: list[str], weights: dict[str, float] | None = None) -> None:
        super().__init__(tasks)
        self.fixed = check_weights(weights, self.tasks, "loss weights")

    def weights(self) -> dict[str, float]:
        return dict(self.fixed)


class UncertaintyWeighting(Weighting):
    """Learned homoscedastic uncertainty per task (Kendall et al. 2018); log-variances start at 0."""

    def __init__(self, tasks: list[str]) -> None:
        super().__init__(tasks)
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def weights(self) -> dict[str, float]:
        precision = (0.5 * torch.exp(-self.log_vars.detach())).tolist()
        return dict(zip(self.tasks, precision))

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        stacked = torch.stack([losses[t] for t in self.tasks])
        s = self.log_vars.to(stacked.dtype)
        return (0.5 * torch.exp(-s) * stacked + 0.5 * s).sum()


class DynamicWeightAveraging(Weighting):
    """DWA (Liu et al. 2019): weights follow each task's rate of loss descent, temperature 2."""

    def __init__(self, tasks: list[str], temperature: float = 2.0) -> None:
        super().__init__(tasks)
        if temperature <= 0:
            raise LeannetError(f"DWA temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.history: list[dict[str, float]] = []

    def weights(self) -> dict[str, float]:
        if len(self.history) < 2:
            return {t: 1.0 for t in self.tasks}
        previous, before = self.history[-1], self.history[-2]
        ratios = torch.tensor([previous[t] / max(before[t], 1e-12) for t in self.tasks],
                              dtype=torch.float64)
        w = len(self.tasks) * torch.softmax(ratios / self.temperature, dim=0)
        return dict(zip(self.tasks, w.tolist()))

    def on_epoch_end(self, epoch_losses: dict[str, float]) -> None:
        missing = [t for t in self.tasks if t not in epoch_losses]
        if missing:
            raise LeannetError(f"DWA needs the epoch loss of every task; missing {missing}")
        self.history = (self.history + [{t: float(epoch_losses[t]) for t in self.tasks}])[-2:]


def make_weighting(name: str, tasks: list[str], weights: dict[str, float] | None = None,
                   temperature: float = 2.0) -> Weighting:
    """A weighting scheme by name: `fixed` (optionally with `weights`), `uncertainty`, `dwa`."""
    if name not in WEIGHTINGS:
        raise LeannetError(f"unknown loss weighting {name!r}; expected one of {', '.join(WEIGHTINGS)}")
    if weights and name != "fixed":
        raise LeannetError(f"fixed task weights cannot be combined with {name!r} weighting")
    if name == "fixed":
        return FixedWeighting(tasks, weights)
    if name == "uncertainty":
        return UncertaintyWeighting(tasks)
    return DynamicWeightAveraging(tasks, temperature)
