"""Optimisers (SGD with momentum, AdamW) and a per-step cosine schedule with linear warm-up."""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from leannet.errors import LeannetError


def param_groups(modules: Iterable[nn.Module], weight_decay: float, lr: float | None = None
                 ) -> list[dict]:
    """Weight decay on conv/linear weights only; biases and norm scales (1-d tensors) are exempt.

    A parameter with an `lr_scale` attribute (transfer learning sets it on a pretrained backbone,
    see `leannet.train.transfer`) gets its own groups at `lr * lr_scale`.
    """
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {(True, 1.0): [], (False, 1.0): []}
    seen: set[int] = set()
    for module in modules:
        for p in module.parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            scale = float(getattr(p, "lr_scale", 1.0))
            groups.setdefault((p.ndim > 1, scale), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0,
             **({"lr": lr * scale} if scale != 1.0 and lr is not None else {})}
            for (decay, scale), params in groups.items() if params or scale == 1.0]


def make_optimizer(modules: Iterable[nn.Module], name: str = "sgd", lr: float = 0.1,
                   weight_decay: float = 5e-4, momentum: float = 0.9) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or AdamW over the parameters of `modules`."""
    if lr <= 0:
        raise LeannetError(f"learning rate must be positive, got {lr}")
    if weight_decay < 0:
        raise LeannetError(f"weight decay must be >= 0, got {weight_decay}")
    groups = param_groups(modules, weight_decay, lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise LeannetError(f"unknown optimizer {name!r}; expected sgd or adamw")


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0
                  ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from ~0 to the base lr over `warmup_steps`, then cosine decay to 0."""
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
