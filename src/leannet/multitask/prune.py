"""Pruning soft-sharing models with one tied plan: the same channels go in every column.

A soft-sharing penalty compares corresponding parameters of the columns, so pruning must keep
their shapes (and the meaning of each kept channel) identical. Importance is scored on the whole
model, summed over the columns (weighted per task), planned once on the first column, and the
plan is copied to every column. Hard-sharing models need nothing special: `leannet.Pruner`
handles their dict outputs and protects every head's output.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
from torch import nn

from leannet.errors import LeannetError
from leannet.prune import Pruner, PruningPlan
from leannet.nn.sharing import SoftSharing
from leannet.multitask.weighting import check_weights


def _column_scores(scores: dict[str, np.ndarray], tasks: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Group scores by name within a column: {relative group name: {task: scores}}."""
    by_name: dict[str, dict[str, np.ndarray]] = {}
    for name, values in scores.items():
        for task in tasks:
            prefix = f"columns.{task}."
            if name.startswith(prefix):
                by_name.setdefault(name[len(prefix):], {})[task] = np.asarray(values, float)
    return by_name


def tied_scores(pruner: Any, model: SoftSharing,
                task_weights: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Per relative group name, the weighted sum over columns of each column's channel scores."""
    tasks = model.task_names
    weights = check_weights(task_weights, tasks, "task weights")
    tied: dict[str, np.ndarray] = {}
    for name, per_task in _column_scores(pruner.scores(), tasks).items():
        if set(per_task) != set(tasks) or len({v.shape for v in per_task.values()}) != 1:
            raise LeannetError(f"channel group {name!r} differs between the soft-sharing columns; "
                               "a tied plan needs columns of one architecture and equal widths")
        tied[name] = np.sum([weights[t] * per_task[t] for t in tasks], axis=0)
    return tied


def tied_plan(model: SoftSharing, example_inputs: Any, target: Any, criterion: str | Callable = "l1",
              *, loader: Iterable | None = None, loss_fn: Callable | None = None,
              max_batches: int | None = None, task_weights: dict[str, float] | None = None,
              ignore: Iterable[Any] = (), global_ranking: bool = True) -> Any:
    """A PruningPlan for the whole model that keeps the same channels in every column.

    Data criteria (taylor, apoz, mean_activation) calibrate on `loader` (with `loss_fn`, e.g.
    `MultiTask.task_losses`). `target` is a leannet.Target; its fraction holds for every column
    and so for the whole model.
    """
    _check_soft(model)
    whole = Pruner(model, example_inputs, criterion, ignore=ignore, global_ranking=global_ranking)
    if loader is not None:
        whole.calibrate(loader, loss_fn, max_batches)
    return plan_from_pruner(whole, target, task_weights)


def plan_from_pruner(pruner: Any, target: Any, task_weights: dict[str, float] | None = None) -> Any:
    """The tied plan from a Pruner over a whole SoftSharing model (calibrated if its criterion
    needs data): column scores summed (weighted by `task_weights`, default the pruner's),
    planned on the first column, copied to every column."""
    model = pruner.model
    _check_soft(model)
    weights = task_weights if task_weights is not None else pruner.task_weights
    tied = tied_scores(pruner, model, weights)
    tasks = model.task_names

    def criterion_of_column(group: Any, _model: nn.Module) -> np.ndarray:
        return tied.get(group.name, np.ones(group.size))  # e.g. the input: never prunable

    column = Pruner(model.columns[tasks[0]], pruner.example_inputs, criterion=criterion_of_column,
                    ignore=[_relative(item, tasks[0]) for item in pruner.ignore],
                    global_ranking=pruner.global_ranking)
    plan = column.plan(target)
    groups = {f"columns.{t}.{name}": dict(entry) for t in tasks
              for name, entry in plan.groups.items()}
    criterion = pruner.criterion
    tied_plan_ = PruningPlan(groups, {**plan.meta, "tied_columns": tasks,
                                      "criterion": getattr(criterion, "__name__", criterion)})
    tied_plan_.meta["removed_channels"] = tied_plan_.removed_channels
    return tied_plan_


def tied_column_planner(model: nn.Module) -> Callable[[Any, Any], Any] | None:
    """For `iterative_prune(planner=...)`: soft-sharing columns are planned together (one tied
    plan), any other model by the pruner's own ranking (None)."""
    return plan_from_pruner if isinstance(model, SoftSharing) else None


def _check_soft(model: nn.Module) -> None:
    if not isinstance(model, SoftSharing):
        raise LeannetError(f"a tied plan is for SoftSharing models, not {type(model).__name__}; "
                           "prune other models with leannet.Pruner")


def _relative(item: Any, task: str) -> Any:
    """An ignore entry for the first column: names lose their `columns.<task>.` prefix."""
    prefix = f"columns.{task}."
    return item[len(prefix):] if isinstance(item, str) and item.startswith(prefix) else item


def prune_tied(model: SoftSharing, example_inputs: Any, target: Any,
               criterion: str | Callable = "l1", verify: bool = True, **options: Any) -> Any:
    """Plan (see `tied_plan`) and apply with verification; apply records the plan for save/load."""
    plan = tied_plan(model, example_inputs, target, criterion, **options)
    Pruner(model, example_inputs).apply(plan, verify=verify)
    model.shared_parameter_names()  # the columns still agree in shape
    return plan
