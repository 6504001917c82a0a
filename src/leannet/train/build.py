"""Build a model and its task for a data source: the glue `leannet train`, `eval` and the demo share.

Which model and task a source gets is the business of its task kind (`leannet.train.kinds`):
classification in `train/kind.py`, detection and multi-task in their own packages.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leannet.data.multihead import multihead_view
from leannet.data.registry import DataSource, get_source, list_sources
from leannet.errors import LeannetError
from leannet.train.kinds import BuildOptions, kind_for, task_for


def build_for_source(source: DataSource, model: str, *, width_mult: float | None = None,
                     task: str | None = None, head: str = "v3", sharing: str | None = None,
                     penalty: str | None = None, strength: float | None = None,
                     weighting: str | None = None, label_smoothing: float = 0.0
                     ) -> tuple[nn.Module, Any]:
    """A fresh model named `model` for `source` and the task that trains it, from the task kind
    that `task` (default: the source's own) names."""
    options = BuildOptions(width_mult, head, sharing, penalty, strength, weighting,
                           label_smoothing)
    return kind_for(source, task, options).build(source, model, options)


def remember_data(model: nn.Module, name: str, root: str | Path | None) -> None:
    """Record the training source in the model's config, so `leannet eval` can default to it."""
    config = getattr(model, "leannet_config", None)
    if config is not None:
        config["data"] = {"name": name, "root": str(root) if root is not None else None}


def source_for_model(model: nn.Module, name: str | None, root: str | Path | None,
                     val_fraction: float | None = None, where: str = "the model"
                     ) -> tuple[DataSource, Any]:
    """The source to evaluate or fine-tune `model` on (default: the one it was trained on, as
    `leannet train` recorded it) and its task; a source whose images do not fit is refused.

    Used by `eval` and by the prune/deploy workbench, so both open a model folder the same way.
    `where` names the model in messages (e.g. "the model in runs/x/model").
    """
    config = getattr(model, "leannet_config", {}) or {}
    remembered = config.get("data") or {}
    if name is None:
        name = remembered.get("name")
        if name is None:
            raise LeannetError(f"{where} does not record its data source; pass --data")
        root = root if root is not None else remembered.get("root")
    channels, height = config.get("input_shape", [None, None])[:2]
    options: dict[str, Any] = {"image_size": height} if height and _accepts_image_size(name) else {}
    if val_fraction is not None:
        options["val_fraction"] = val_fraction
    source = get_source(name, root, **options)
    heads = getattr(model, "head_specs", None)
    if heads:  # a multi-head model reads one label per head from the source
        source = multihead_view(source, list(heads))
    if channels is not None and source.in_channels != channels:
        raise LeannetError(f"data source {name!r} has {source.in_channels} channel(s) but "
                           f"{where} expects {channels}")
    return source, task_for(model, source)


def check_fits(model: nn.Module, inputs: Any, source: DataSource, where: str = "the model"
               ) -> None:
    """Run one small batch of the source through `model`: a shape that does not fit, a
    multi-task model on a single-task source, or a classifier with another number of classes
    is one clear line here, not a traceback in the middle of a run. Leaves `model` in eval
    mode."""
    try:
        with torch.no_grad():
            outputs = model.eval()(inputs)
    except RuntimeError as err:
        raise LeannetError(f"data source {source.name!r} does not fit {where}: "
                           f"{str(err).splitlines()[0]}") from None
    if isinstance(outputs, dict) and source.task not in ("multitask", "multihead", "detect"):
        raise LeannetError(f"{where} is multi-task (tasks {', '.join(outputs)}) but data source "
                           f"{source.name!r} is not; pass a multi-task --data such as multi-digits")
    if source.task == "classify" and outputs.shape[-1] != source.num_classes:
        raise LeannetError(f"data source {source.name!r} has {source.num_classes} classes but "
                           f"{where} predicts {outputs.shape[-1]}")


def _accepts_image_size(name: str) -> bool:
    """Whether the source factory behind `name` takes an `image_size` option."""
    sources = list_sources()
    key = name if name in sources else name.split(":", 1)[0] + ":"
    if key not in sources:
        return False
    params = inspect.signature(sources[key].factory).parameters
    return "image_size" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
