"""Registered multi-task architectures, rebuildable from JSON: `hard_sharing` and `soft_sharing`.

A trunk is any registered model with its classifier (its last Linear layer) replaced by Identity,
so its output is the feature vector the classifier used to read. Heads are a Linear layer, or a
small MLP when `head_hidden` > 0 (the LeNet-style MultiMNIST heads of Sener & Koltun 2018).
"""
from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor, nn

from leannet.errors import LeannetError
from leannet.models.registry import create_model, list_models, register
from leannet.nn.sharing import HardSharing, SoftSharing, check_task_names


def make_trunk(name: str, kwargs: dict[str, Any] | None = None, in_channels: int = 1,
               image_size: int = 28) -> tuple[nn.Module, int]:
    """Build registered model `name` without its classifier; return it and its feature width."""
    if name in ("hard_sharing", "soft_sharing"):
        raise LeannetError(f"a trunk must be a single-task model, not {name!r}")
    kwargs = dict(kwargs or {})
    models = list_models()
    if name not in models:
        raise LeannetError(f"unknown trunk model {name!r}; expected one of {', '.join(models)}")
    params = inspect.signature(models[name].builder).parameters
    for key, value in (("in_channels", in_channels), ("image_size", image_size)):
        if key in params:
            kwargs.setdefault(key, value)
    model = create_model(name, **kwargs)
    del model.leannet_config  # the multi-task model owns the config
    linears = [(path, m) for path, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise LeannetError(f"model {name!r} has no Linear classifier to remove; it cannot be a trunk")
    path, classifier = linears[-1]
    parent = model.get_submodule(path.rpartition(".")[0]) if "." in path else model
    setattr(parent, path.rpartition(".")[2], nn.Identity())
    return model, classifier.in_features


def make_head(in_features: int, num_classes: int, hidden: int = 0) -> nn.Module:
    """A task head: Linear, or Linear -> ReLU -> Linear when `hidden` > 0."""
    if hidden and hidden > 0:
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
                             nn.Linear(hidden, num_classes))
    return nn.Linear(in_features, num_classes)


def _check_tasks(tasks: Any) -> dict[str, int]:
    """tasks must map task name -> number of classes (>= 1)."""
    if not isinstance(tasks, dict):
        raise LeannetError(f"tasks must map task name to number of classes, got {tasks!r}")
    check_task_names(tasks, "tasks")
    for name, classes in tasks.items():
        if not isinstance(classes, int) or classes < 1:
            raise LeannetError(f"task {name!r} needs a positive number of classes, got {classes!r}")
    return dict(tasks)


@register("hard_sharing", default_image_size=28)
def hard_sharing(tasks: dict[str, int], trunk: str = "simple_cnn",
                 trunk_kwargs: dict[str, Any] | None = None, head_hidden: int = 0,
                 in_channels: int = 1, image_size: int = 28) -> HardSharing:
    """Hard parameter sharing: one trunk (a registered model minus classifier), a head per task."""
    tasks = _check_tasks(tasks)
    body, width = make_trunk(trunk, trunk_kwargs, in_channels, image_size)
    heads = {t: make_head(width, n, head_hidden) for t, n in tasks.items()}
    return HardSharing(body, heads)


class Column(nn.Module):
    """One task's own network in soft sharing: a trunk and a head."""

    def __init__(self, trunk: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))


@register("soft_sharing", default_image_size=28)
def soft_sharing(tasks: dict[str, int], column: str = "simple_cnn",
                 column_kwargs: dict[str, Any] | None = None, head_hidden: int = 0,
                 penalty: str = "l2", strength: float = 1e-3, penalize_heads: bool = False,
                 in_channels: int = 1, image_size: int = 28) -> SoftSharing:
    """Soft parameter sharing: a column per task (same architecture), an L2 or trace-norm penalty.

    Heads are task-specific (Duong et al. 2015) and left out of the penalty unless
    `penalize_heads`; with different class counts per task their shapes could not be compared.
    """
    tasks = _check_tasks(tasks)
    columns: dict[str, nn.Module] = {}
    for t, n in tasks.items():
        body, width = make_trunk(column, column_kwargs, in_channels, image_size)
        columns[t] = Column(body, make_head(width, n, head_hidden))
    return SoftSharing(columns, penalty, strength, exclude=() if penalize_heads else ("head.",))
