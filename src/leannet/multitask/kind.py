"""Task kinds `multitask` (hard or soft sharing, a classifier head per task) and `multihead`
(one backbone, heads of different kinds: detect, segment, classify, multilabel)."""
from __future__ import annotations

from typing import Any

from torch import nn

from leannet.data.registry import DataSource
from leannet.multitask.multihead import build as build_heads
from leannet.multitask.multihead import task_for as heads_task_for
from leannet.multitask.prune import tied_column_planner
from leannet.multitask.setup import build as build_shared
from leannet.multitask.setup import task_for as multitask_task_for
from leannet.train.kinds import BuildOptions, TaskKind, register_kind


def build(source: DataSource, model: str, options: BuildOptions) -> tuple[nn.Module, Any]:
    """A hard- or soft-sharing model over `model` and its weighted multi-task loss."""
    return build_shared(source, model, options.backbone_kwargs(), options.sharing,
                        options.penalty, options.strength, options.weighting,
                        label_smoothing=options.label_smoothing)


def task_for(model: nn.Module, source: DataSource) -> Any:
    """The MultiTask for a saved multi-task model, checked against the source's tasks."""
    return multitask_task_for(model, source)


register_kind(TaskKind("multitask", build, task_for,
                       recipe={"optimizer": "sgd", "warmup_epochs": 1.0},
                       planner=tied_column_planner))


def build_multihead(source: DataSource, model: str, options: BuildOptions
                    ) -> tuple[nn.Module, Any]:
    """A multi-head model (one backbone, a head per task of the source) and its MultiTask."""
    return build_heads(source, model, options.backbone_kwargs(), options.weighting,
                       sharing=options.sharing)


register_kind(TaskKind("multihead", build_multihead, heads_task_for,
                       recipe={"optimizer": "adamw", "warmup_epochs": 1.0},
                       planner=tied_column_planner))  # cross-stitch columns stay tied
