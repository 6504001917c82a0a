"""The `classify` task kind: a registry model with one logit per class of the source."""
from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from leannet.data.registry import DataSource
from leannet.errors import LeannetError
from leannet.models import create_model, get_model_entry
from leannet.train.kinds import BuildOptions, TaskKind, register_kind
from leannet.train.tasks import ClassificationTask

SMALL_INPUT_MAX = 64  # images up to this size get a model's small-input variant


def model_kwargs_for(name: str, source: DataSource, width_mult: float | None = None
                     ) -> dict[str, Any]:
    """Registry kwargs that fit `name` to a classify `source` (only those the builder accepts)."""
    accepted = inspect.signature(get_model_entry(name).builder).parameters  # zoo names too
    wanted: dict[str, Any] = {"num_classes": source.num_classes,
                              "in_channels": source.in_channels, "image_size": source.image_size}
    if "small_input" in accepted:
        wanted["small_input"] = source.image_size <= SMALL_INPUT_MAX
    if width_mult is not None:
        if "width_mult" not in accepted:
            raise LeannetError(f"model {name!r} has no width multiplier")
        if width_mult <= 0:
            raise LeannetError(f"width multiplier must be positive, got {width_mult}")
        wanted["width_mult"] = float(width_mult)
    return {k: v for k, v in wanted.items() if k in accepted}


def build(source: DataSource, model: str, options: BuildOptions) -> tuple[nn.Module, Any]:
    """A classifier for `source` and the cross-entropy task that trains it."""
    net = create_model(model, **model_kwargs_for(model, source, options.width_mult))
    return net, ClassificationTask(options.label_smoothing)


def task_for(model: nn.Module, source: DataSource) -> Any:
    """Classification: cross-entropy and accuracy."""
    return ClassificationTask()


register_kind(TaskKind("classify", build, task_for,
                       recipe={"optimizer": "sgd", "warmup_epochs": 1.0}))
