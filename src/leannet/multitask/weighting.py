"""How task losses combine into one: fixed weights, uncertainty weighting, dynamic weight averaging.

- fixed: sum of w_t * L_t (weights default to 1).
- uncertainty (Kendall, Gal & Cipolla 2018): learned s_t = log sigma_t^2 per task,
  L = sum 0.5 * exp(-s_t) * L_t + 0.5 * s_t; at the optimum sigma_t^2 equals the task loss.
- dwa (Liu, Johns & Davison 2019): w_t = T * softmax_t(r_t / temperature), r_t = L_t(e-1) / L_t(e-2)
  from the mean training losses of the last two epochs; weights are 1 for the first two epochs.
- gradnorm (Chen et al. 2018): learned weights that pull each task's weighted gradient norm on
  the last shared layer towards the mean norm times (relative inverse training rate)^alpha.
- pcgrad, cagrad, imtl, aligned, nash: gradient manipulation on the shared parameters (see
  `leannet.multitask.gradients`); they need per-task gradients, so they do the backward pass
  themselves (`backward`), which the fit loop calls instead of `loss.backward()`.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn

from leannet.errors import LeannetError
from leannet.multitask.gradients import METHODS, pcgrad

WEIGHTINGS = ("fixed", "uncertainty", "dwa", "gradnorm", *METHODS)


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

    def backward(self, losses: dict[str, Tensor], loss: Tensor,
                 shared: Iterable[nn.Parameter]) -> None:
        """Gradients of `loss` (the weighted task losses plus any auxiliary loss) for the step;
        `losses` are the task losses it was made of, `shared` the parameters every task reaches."""
        loss.backward()


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


def _flat_grads(loss: Tensor, params: list[nn.Parameter]) -> Tensor:
    """d loss / d params as one vector (zeros where a parameter does not reach the loss)."""
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params)])


class GradientWeighting(Weighting):
    """PCGrad, CAGrad, IMTL-G, Aligned-MTL or Nash-MTL on the shared parameters; weights stay 1.

    Task-specific parameters (heads) get their own task's gradient as usual; on the shared
    parameters, the plain sum of task gradients is replaced by the method's direction.
    Costs one extra backward pass per task.
    """

    def __init__(self, tasks: list[str], method: str, seed: int = 0) -> None:
        super().__init__(tasks)
        self.method = method
        self.generator = torch.Generator().manual_seed(seed)
        self.last_grads: Tensor | None = None  # (tasks, shared) of the latest step, for tests

    def weights(self) -> dict[str, float]:
        return {t: 1.0 for t in self.tasks}

    def combine(self, grads: Tensor) -> Tensor:
        """The direction for the (tasks, parameters) gradient matrix."""
        if self.method == "pcgrad":
            return pcgrad(grads, self.generator)
        return METHODS[self.method](grads)

    def backward(self, losses: dict[str, Tensor], loss: Tensor,
                 shared: Iterable[nn.Parameter]) -> None:
        params = [p for p in shared if p.requires_grad]
        if not params:
            raise LeannetError(f"{self.method} needs shared parameters (a multi-task model with "
                               "a shared trunk or backbone)")
        grads = torch.stack([_flat_grads(losses[t], params) for t in self.tasks])
        self.last_grads = grads.detach()
        loss.backward()
        change = self.combine(grads.float()).to(grads.dtype) - grads.sum(0)
        offset = 0
        for p in params:
            n = p.numel()
            step = change[offset:offset + n].view_as(p)
            p.grad = step if p.grad is None else p.grad + step
            offset += n


class GradNorm(Weighting):
    """GradNorm (Chen et al. 2018): weights learned by an L1 loss on gradient norms, renormalised
    to sum to the number of tasks; `alpha` sets how hard slow tasks are pushed."""

    def __init__(self, tasks: list[str], alpha: float = 1.5) -> None:
        super().__init__(tasks)
        self.alpha = float(alpha)
        self.task_weights = nn.Parameter(torch.ones(len(self.tasks)))
        self.initial: Tensor | None = None

    def weights(self) -> dict[str, float]:
        w = self.task_weights.detach().clamp_min(1e-3)
        return dict(zip(self.tasks, (w * len(self.tasks) / w.sum()).tolist()))

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        with torch.no_grad():  # renormalise after the last optimiser step
            w = self.task_weights.clamp_min(1e-3)
            self.task_weights.copy_(w * len(self.tasks) / w.sum())
        stacked = torch.stack([losses[t] for t in self.tasks])
        return (self.task_weights.to(stacked.dtype) * stacked).sum()

    def backward(self, losses: dict[str, Tensor], loss: Tensor,
                 shared: Iterable[nn.Parameter]) -> None:
        last = [p for p in shared if p.requires_grad and p.ndim > 1][-1:]
        if not last:
            raise LeannetError("gradnorm needs shared weights (a multi-task model with a shared "
                               "trunk or backbone)")
        stacked = torch.stack([losses[t] for t in self.tasks])
        norms = torch.stack([torch.autograd.grad(self.task_weights[i] * stacked[i], last,
                                                 retain_graph=True, create_graph=True)[0].norm()
                             for i in range(len(self.tasks))])
        if self.initial is None:
            self.initial = stacked.detach().clamp_min(1e-12)
        ratio = stacked.detach() / self.initial
        target = (norms.mean() * (ratio / ratio.mean()) ** self.alpha).detach()
        weight_grad, = torch.autograd.grad((norms - target).abs().sum(), self.task_weights,
                                           retain_graph=True)
        loss.backward()
        self.task_weights.grad = weight_grad


def make_weighting(name: str, tasks: list[str], weights: dict[str, float] | None = None,
                   temperature: float = 2.0) -> Weighting:
    """A weighting scheme by name: `fixed` (optionally with `weights`), `uncertainty`, `dwa`,
    `gradnorm`, or a gradient method (`pcgrad`, `cagrad`, `imtl`, `aligned`, `nash`)."""
    if name not in WEIGHTINGS:
        raise LeannetError(f"unknown loss weighting {name!r}; expected one of {', '.join(WEIGHTINGS)}")
    if weights and name != "fixed":
        raise LeannetError(f"fixed task weights cannot be combined with {name!r} weighting")
    if name == "fixed":
        return FixedWeighting(tasks, weights)
    if name == "uncertainty":
        return UncertaintyWeighting(tasks)
    if name == "gradnorm":
        return GradNorm(tasks)
    if name in METHODS:
        return GradientWeighting(tasks, name)
    return DynamicWeightAveraging(tasks, temperature)
