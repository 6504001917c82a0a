"""What the training CLI calls for `--task detect`: build a YOLO model + task from a data source.

`build` picks anchors by k-means on the source's training boxes (v2: 5, v3: 9, as the papers do),
so a saved model carries its anchors in its JSON kwargs and `task_for` can rebuild the task.
"""
from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from leannet.data.registry import DataSource
from leannet.detect.anchors import kmeans_anchors
from leannet.detect.task import DetectionTask
from leannet.errors import LeannetError
from leannet.models.registry import create_model
from leannet.models.yolo import yolo

ANCHORS_PER_HEAD = {"v2": 5, "v3": 9}
_YOLO_ARGS = set(inspect.signature(yolo).parameters) - {"backbone", "backbone_kwargs", "head"}


def anchors_for(source: DataSource, k: int) -> list[list[float]]:
    """k-means anchors (pixels at the model's input size) from the source's training boxes."""
    sizes = getattr(source.train, "box_sizes", None)
    if sizes is None:
        raise LeannetError(f"data source {source.name!r} does not list its box sizes; "
                           "pass anchors=[[w, h], ...] in the model arguments")
    anchors, _ = kmeans_anchors(sizes(), k)
    return [[round(float(w), 2), round(float(h), 2)] for w, h in anchors]


def build(source: DataSource, model: str = "mobilenet_v2", model_kwargs: dict | None = None,
          head: str = "v3") -> tuple[nn.Module, DetectionTask]:
    """A YOLO `head` on backbone `model` for `source`; kwargs YOLO knows go to YOLO, the rest
    (width_mult, ...) to the backbone."""
    if source.task != "detect":
        raise LeannetError(f"data source {source.name!r} is a {source.task} source; "
                           "--task detect needs a detection source (digits-detect, yolo:PATH)")
    model_kwargs = dict(model_kwargs or {})
    own: dict[str, Any] = {k: model_kwargs.pop(k) for k in list(model_kwargs) if k in _YOLO_ARGS}
    kwargs: dict[str, Any] = {
        "backbone": model, "backbone_kwargs": model_kwargs, "head": head,
        "num_classes": source.num_classes, "in_channels": source.in_channels,
        "image_size": source.image_size, "class_names": list(source.class_names),
        "count_classes": int(source.extra.get("count_classes", 0)),
    }
    kwargs.update(own)
    if head in ANCHORS_PER_HEAD and "anchors" not in own:
        kwargs["anchors"] = anchors_for(source, ANCHORS_PER_HEAD[head])
    net = create_model("yolo", **kwargs)
    return net, task_for(net, source)


def task_for(model: nn.Module, source: DataSource | None = None) -> DetectionTask:
    """The DetectionTask that reads this YOLO model's outputs."""
    spec = getattr(model, "detect_spec", None)
    if spec is None:
        raise LeannetError("model is not a YOLO detector (no detect_spec); build it with "
                           "--task detect or create_model('yolo', ...)")
    return DetectionTask(spec)
