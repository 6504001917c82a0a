"""What `leannet train --tasks ...` calls: a `multi_head` model for a multihead source, its task.

The source's task spec (`extra["tasks"]`) says which tasks there are and what kind of label each
has; each becomes a head of that kind on one backbone (detect: YOLOv3 with k-means anchors from
the training boxes; segment: LR-ASPP; classify / multilabel: pooled logits). The MultiTask holds
one sub-task per head (see `leannet.multitask.heads`) and the loss weighting.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from leannet.data.registry import DataSource
from leannet.detect.anchors import kmeans_anchors
from leannet.errors import LeannetError
from leannet.models.registry import create_model
from leannet.multitask.heads import head_tasks
from leannet.multitask.tasks import MultiTask

ANCHORS = 9  # YOLOv3: three per level
HEAD_KEYS = ("kind", "classes", "class_names", "tap", "width", "hidden", "anchors")


def source_specs(source: DataSource) -> dict[str, dict[str, Any]]:
    """{task: spec} of a multihead source, or a one-line error naming what to pass."""
    specs = source.extra.get("tasks") if source.task == "multihead" else None
    if not specs:
        raise LeannetError(f"data source {source.name!r} is not a multi-head source; pass "
                           "--tasks (e.g. --tasks detect,segment,classify) with a source that "
                           "labels several tasks, such as digits-detect")
    return specs


def head_specs(source: DataSource) -> dict[str, dict[str, Any]]:
    """The model's head specs for a multihead source: kind, classes, names, anchors."""
    heads: dict[str, dict[str, Any]] = {}
    for name, spec in source_specs(source).items():
        head = {k: v for k, v in spec.items() if k in HEAD_KEYS}
        if head["kind"] == "detect" and "anchors" not in head:
            anchors, _ = kmeans_anchors(source.train.box_sizes(), ANCHORS)  # type: ignore[attr-defined]
            head["anchors"] = [[round(float(w), 2), round(float(h), 2)] for w, h in anchors]
        heads[name] = head
    return heads


def build(source: DataSource, model: str = "mobilenet_v2",
          backbone_kwargs: dict[str, Any] | None = None, weighting: str | None = None,
          task_weights: dict[str, float] | None = None, sharing: str | None = None
          ) -> tuple[nn.Module, MultiTask]:
    """A `multi_head` model on backbone `model` with a head per task of `source`, and its task;
    `sharing` is hard (default), mtan or cross_stitch."""
    net = create_model("multi_head", heads=head_specs(source), backbone=model,
                       backbone_kwargs=dict(backbone_kwargs or {}),
                       in_channels=source.in_channels, image_size=source.image_size,
                       sharing=sharing or "hard")
    return net, task_for(net, source, weighting or "fixed", task_weights)


def task_for(model: nn.Module, source: DataSource | None = None, weighting: str = "fixed",
             task_weights: dict[str, float] | None = None) -> MultiTask:
    """The MultiTask that trains and evaluates a multi-head model (checked against `source`)."""
    subtasks = head_tasks(model)
    if source is not None:
        missing = [t for t in subtasks if t not in source_specs(source)]
        if missing:
            raise LeannetError(f"data source {source.name!r} has no labels for task(s) "
                               f"{', '.join(missing)}")
    return MultiTask(list(subtasks), weighting, task_weights, subtasks=subtasks)
