"""Build a model and its task for a data source: the glue `leannet train`, `eval` and the demo share.

Classification models get the source's classes, channels and image size (and the small-input
variant for images up to 64 px); detection and multi-task sources are handed to
`leannet.detect.setup` and `leannet.multitask.setup`.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from torch import nn

from leannet.data.registry import DataSource, get_source, list_sources
from leannet.errors import LeannetError
from leannet.train.tasks import ClassificationTask, task_for

SMALL_INPUT_MAX = 64


def model_kwargs_for(name: str, source: DataSource, width_mult: float | None = None
                     ) -> dict[str, Any]:
    """Registry kwargs that fit `name` to a classify `source` (only those the builder accepts)."""
    from leannet.models import list_models

    models = list_models()
    if name not in models:
        raise LeannetError(f"unknown model {name!r}; expected one of {', '.join(models)}")
    accepted = inspect.signature(models[name].builder).parameters
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


def build_for_source(source: DataSource, model: str, *, width_mult: float | None = None,
                     task: str | None = None, head: str = "v3", sharing: str | None = None,
                     penalty: str | None = None, strength: float | None = None,
                     weighting: str | None = None, label_smoothing: float = 0.0
                     ) -> tuple[nn.Module, Any]:
    """A fresh model named `model` for `source` and the task that trains it."""
    kind = task or source.task
    if kind not in ("classify", "detect", "multitask"):
        raise LeannetError(f"unknown task {kind!r}; expected classify, detect or multitask")
    if task == "classify" and source.task != "classify":
        raise LeannetError(f"data source {source.name!r} is a {source.task} source, not classify")
    extra = {"width_mult": float(width_mult)} if width_mult is not None else {}
    if kind == "detect" or source.task == "detect":
        from leannet.detect.setup import build
        return build(source, model, extra, head)
    if sharing is not None or source.task == "multitask":
        from leannet.multitask.setup import build
        return build(source, model, extra, sharing, penalty, strength, weighting,
                     label_smoothing=label_smoothing)
    from leannet.models import create_model
    net = create_model(model, **model_kwargs_for(model, source, width_mult))
    return net, ClassificationTask(label_smoothing)


def remember_data(model: nn.Module, name: str, root: str | Path | None) -> None:
    """Record the training source in the model's config, so `leannet eval` can default to it."""
    config = getattr(model, "leannet_config", None)
    if config is not None:
        config["data"] = {"name": name, "root": str(root) if root is not None else None}


def source_for_model(model: nn.Module, name: str | None, root: str | Path | None
                     ) -> tuple[DataSource, Any]:
    """The source to evaluate `model` on (default: the one it was trained on) and its task."""
    config = getattr(model, "leannet_config", {}) or {}
    remembered = config.get("data") or {}
    if name is None:
        name = remembered.get("name")
        if name is None:
            raise LeannetError("the model folder does not record its data source; pass --data")
        root = root if root is not None else remembered.get("root")
    channels, height = config.get("input_shape", [None, None])[:2]
    options = {"image_size": height} if height and _accepts_image_size(name) else {}
    source = get_source(name, root, **options)
    if channels is not None and source.task == "classify" and source.in_channels != channels:
        raise LeannetError(f"data source {name!r} has {source.in_channels} channel(s) but the "
                           f"model expects {channels}")
    return source, task_for(model, source)


def _accepts_image_size(name: str) -> bool:
    """Whether the source factory behind `name` takes an `image_size` option."""
    sources = list_sources()
    key = name if name in sources else name.split(":", 1)[0] + ":"
    if key not in sources:
        return False
    params = inspect.signature(sources[key].factory).parameters
    return "image_size" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
