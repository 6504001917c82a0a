"""Transfer learning: a pretrained backbone under a new head, frozen first, then fine-tuned slower.

The backbone is what the pretrained weights filled (`load_weights` reports the rest, the fresh
head: a classifier for the user's classes, a YOLO neck and heads on a pretrained backbone, a
multi-task model's task heads). While frozen its parameters take no gradient and its BatchNorm
layers stay in eval mode (their running statistics are the pretrained ones, and a small new
dataset would only blur them); unfrozen, they learn at `lr * backbone_lr_scale`. `fit` needs no
change: freezing is `requires_grad` and a pre-forward hook, the scale a parameter attribute that
the optimiser's groups read.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from torch import nn

from leannet.errors import LeannetError


def backbone_parameters(model: nn.Module, fresh: list[str]) -> list[tuple[str, nn.Parameter]]:
    """The parameters the pretrained weights filled (every one not named in `fresh`)."""
    new = set(fresh)
    params = [(name, p) for name, p in model.named_parameters() if name not in new]
    if not params:
        raise LeannetError("the weights filled none of the model's parameters: nothing to freeze")
    return params


def _backbone_norms(model: nn.Module, fresh: list[str]) -> list[nn.Module]:
    """BatchNorm layers whose affine parameters came from the weights."""
    new = set(fresh)
    return [m for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and f"{name}.weight" not in new and f"{name}.running_mean" not in new]


def _keep_eval(module: nn.Module, args: Any) -> None:
    """Pre-forward hook: a frozen BatchNorm normalises with its running statistics."""
    module.training = False


@contextmanager
def frozen_backbone(model: nn.Module, fresh: list[str]) -> Iterator[int]:
    """Inside: the backbone takes no gradient and its BatchNorm stays in eval mode (even under
    `model.train()`); yields the number of frozen parameters. Everything is restored on exit."""
    params = backbone_parameters(model, fresh)
    if len(params) == len(list(model.parameters())):
        raise LeannetError("the weights filled every layer, the head too (same classes): there "
                           "is no new head to train on a frozen backbone; drop --freeze-epochs")
    before = [p.requires_grad for _, p in params]
    hooks = [m.register_forward_pre_hook(_keep_eval) for m in _backbone_norms(model, fresh)]
    for _, p in params:
        p.requires_grad_(False)
    try:
        yield sum(p.numel() for _, p in params)
    finally:
        for hook in hooks:
            hook.remove()
        for (_, p), flag in zip(params, before):
            p.requires_grad_(flag)


def scale_backbone_lr(model: nn.Module, fresh: list[str], scale: float) -> None:
    """Let the backbone learn at `scale` times the learning rate (1.0 removes the scaling)."""
    if not 0 < scale <= 1:
        raise LeannetError(f"--backbone-lr-scale must be in (0, 1], got {scale}")
    for _, p in backbone_parameters(model, fresh):
        if scale == 1.0:
            if hasattr(p, "lr_scale"):
                del p.lr_scale
        else:
            p.lr_scale = scale  # type: ignore[attr-defined]  # read by train.optim.param_groups
