"""What the training CLI calls for multi-task data: build a sharing model + its task, or a task for a model."""
from __future__ import annotations

from typing import Any

from torch import nn

from leannet.errors import LeannetError
from leannet.multitask.tasks import MultiTask
from leannet.models import create_model

SHARINGS = ("hard", "soft")


def source_tasks(source: Any) -> dict[str, int]:
    """{task: classes} of a multi-task DataSource (its `extra['tasks']`)."""
    tasks = (getattr(source, "extra", None) or {}).get("tasks")
    if getattr(source, "task", None) != "multitask" or not tasks:
        name = getattr(source, "name", "?")
        raise LeannetError(f"data source {name!r} is not multi-task; multi-task sharing needs a "
                           "source such as multi-digits, multi-mnist or multilabel-csv:PATH")
    return {str(k): int(v) for k, v in tasks.items()}


def build(source: Any, model: str = "simple_cnn", model_kwargs: dict[str, Any] | None = None,
          sharing: str | None = "hard", penalty: str | None = None, strength: float | None = None,
          weighting: str | None = "fixed", *, head_hidden: int = 0,
          task_weights: dict[str, float] | None = None, label_smoothing: float = 0.0
          ) -> tuple[nn.Module, MultiTask]:
    """A registry-built multi-task model over `model` (the trunk/column architecture) and its task.

    `sharing` is "hard" (one trunk, a head per task) or "soft" (a column per task, `penalty` "l2"
    or "trace" with strength `strength`, default 1e-3). `weighting` is fixed / uncertainty / dwa;
    `task_weights` sets fixed weights per task.
    """

    tasks = source_tasks(source)
    sharing = sharing or "hard"
    if sharing not in SHARINGS:
        raise LeannetError(f"unknown sharing {sharing!r}; expected 'hard' or 'soft'")
    common = {"tasks": tasks, "head_hidden": int(head_hidden), "in_channels": source.in_channels,
              "image_size": source.image_size}
    kwargs = dict(model_kwargs or {})
    if sharing == "hard":
        # penalty and strength concern soft sharing only; CLI defaults may pass them anyway
        net = create_model("hard_sharing", trunk=model, trunk_kwargs=kwargs, **common)
    else:
        net = create_model("soft_sharing", column=model, column_kwargs=kwargs,
                           penalty=penalty or "l2",
                           strength=1e-3 if strength is None else strength, **common)
    task = MultiTask(list(tasks), weighting or "fixed", task_weights,
                     label_smoothing=label_smoothing)
    return net, task


def task_for(model: nn.Module, source: Any | None = None, weighting: str = "fixed",
             task_weights: dict[str, float] | None = None) -> MultiTask:
    """The MultiTask that evaluates (or fine-tunes) a multi-task model, checked against `source`."""
    tasks = getattr(model, "task_names", None)
    if not tasks:
        raise LeannetError("model is not a multi-task model (it has no task heads or columns)")
    if source is not None:
        missing = [t for t in tasks if t not in source_tasks(source)]
        if missing:
            raise LeannetError(f"data source {source.name!r} has no labels for task(s) {missing}")
    return MultiTask(list(tasks), weighting, task_weights)


