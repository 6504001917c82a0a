"""Small torch helpers every layer may use: eval mode that restores, devices, seeding.

Ground floor. `eval_mode` restores each module's own `training` flag, not the root's: a model
whose BatchNorm is frozen in eval mode (transfer learning) must come back exactly as it was.
"""
from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode for the block, then give each its own flag back."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes.items():
            module.training = mode


def to_device(obj: Any, device: torch.device | str) -> Any:
    """Move tensors inside nested dicts, lists and tuples to `device`."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch, so a run (or one attempt of one) is reproducible alone."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
